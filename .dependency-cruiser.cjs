/**
 * The layering of STYLE.md, enforced in `npm test`.
 * api <- graph, state, checkpoint <- runtime; api, graph <- windows, joins, dedup, cep <- datastream;
 * one importer per native or vendor package.
 */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'api-imports-nothing',
      comment: 'framework/api holds public types and imports no other part of the project',
      severity: 'error',
      from: { path: '^framework/api/' },
      to: { path: '^(framework/(?!api/)|connectors/|examples/)' },
    },
    {
      name: 'graph-is-the-model',
      comment:
        'framework/graph is the job model (graph types, validation, planning) and imports only framework/api: the libraries built on it (windows, joins, dedup, CEP, ML) and the DataStream API that composes them (framework/datastream) sit above it, never below',
      severity: 'error',
      from: { path: '^framework/graph/', pathNot: '\\.test\\.ts$' },
      to: { path: '^(framework/|connectors/|examples/)', pathNot: '^framework/(api|graph)/' },
    },
    {
      name: 'state-below-runtime',
      severity: 'error',
      from: { path: '^framework/(state|checkpoint)/', pathNot: '\\.test\\.ts$' },
      to: { path: '^(framework/(runtime|graph|metrics|testing)/|connectors/|examples/)' },
    },
    {
      name: 'libraries-on-the-public-api',
      comment:
        'windows, joins, dedup, CEP and ML are built on the public API (framework/api, and for ML the DataStream API) only, so they are checkpointed and exactly-once like any user function',
      severity: 'error',
      from: { path: '^framework/(windows|joins|dedup|cep|ml)/', pathNot: '(\\.test\\.ts$|/test-support/)' },
      to: { path: '^(framework/(runtime|state|checkpoint|metrics|service|testing)/|connectors/|examples/)' },
    },
    {
      name: 'libraries-below-the-datastream-api',
      comment:
        'the DataStream API (framework/datastream) composes windows, joins and dedup into KeyedStream methods: they never import it (nor does the runtime, which runs graphs, not streams)',
      severity: 'error',
      from: {
        path: '^framework/(windows|joins|dedup|runtime|state|checkpoint)/',
        pathNot: '(\\.test\\.ts$|/test-support/|/test/)',
      },
      to: { path: '^framework/datastream/' },
    },
    {
      name: 'framework-not-on-connectors',
      severity: 'error',
      from: { path: '^framework/' },
      to: { path: '^(connectors/|examples/)' },
    },
    {
      name: 'only-one-module-imports-kafkajs',
      comment:
        'kafkajs is loaded through connectors/kafka/internal/kafkajs.ts only: it installs and verifies the project read_committed filter before kafkajs loads (kafkajs 2.2.4 lets aborted records through), the fetched-record decoder (fetch-records*.ts) and the producer patches (producer-*.ts; their tests load kafkajs.ts first)',
      severity: 'error',
      from: {
        pathNot:
          '^connectors/kafka/internal/(kafkajs|install-read-committed|(producer|fetch)-[a-z0-9-]+(\\.test)?)\\.ts$',
      },
      to: { path: 'node_modules/kafkajs/' },
    },
    {
      name: 'only-kafka-connector-imports-the-registry-client',
      severity: 'error',
      from: { pathNot: '^connectors/kafka/' },
      to: { path: 'node_modules/@kafkajs/' },
    },
    {
      name: 'only-s3-connector-imports-the-aws-sdk',
      comment:
        'the AWS SDK is large: connectors/s3 alone imports it (tests too, to look behind the storage), and the service loads that lazily',
      severity: 'error',
      from: { pathNot: '^connectors/s3/|^connectors/[^/]+/test/' },
      to: { path: 'node_modules/@aws-sdk/' },
    },
    {
      name: 'only-level-backend-imports-classic-level',
      severity: 'error',
      // and the benchmark of its damage check against LevelDB's own open (scripts/bench/local-check.ts)
      from: { pathNot: '^(framework/state/backends/level/|scripts/bench/local-check\\.ts$)' },
      to: { path: 'node_modules/(classic-level|abstract-level)/' },
    },
    {
      name: 'only-metrics-imports-prom-client',
      severity: 'error',
      from: { pathNot: '^framework/metrics/' },
      to: { path: 'node_modules/prom-client/' },
    },
    {
      name: 'examples-use-public-entry-points',
      comment:
        'examples and connectors import framework/index.ts (or framework/testing/index.ts, or framework/core.ts where the runtime must not load), never deep paths',
      severity: 'error',
      from: { path: '^(examples|connectors)/' },
      to: {
        path: '^framework/',
        pathNot: '^framework/((index|core|testing/index)\\.ts|node/require(-cli)?\\.js)$',
      },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // node_modules must stay visible (not excluded) for the vendor rules above to see imports of them.
    exclude: { path: '(^|/)(dist|\\.cache)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      extensions: ['.ts', '.js'],
    },
  },
};
