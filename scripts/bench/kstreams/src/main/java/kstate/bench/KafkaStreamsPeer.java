package kstate.bench;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueBytesStoreSupplier;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of scripts/bench/kafka-peers.ts: the exactly-once keyed count-and-sum job.
 * Per input record (key k, value JSON {"k", "n", "pad"}): parse the JSON, add one to k's count and n
 * to k's sum in a key-value store, and emit {"k", "n", "count", "sum"} keyed by k. The input is
 * already partitioned by k (murmur2, as Kafka's default partitioner), so there is no repartition.
 *
 * Settings from the environment: KAFKA_BROKERS, APP_ID (the application id, so the consumer group),
 * INPUT, OUTPUT, STATE_DIR, STORE (rocksdb: a persistent RocksDB store, the default; memory: the
 * in-memory store), COMMIT_MS (commit.interval.ms, default 1000), THREADS (num.stream.threads,
 * default 1), CACHE (true, the default: the record cache in front of the store, as the DSL's
 * aggregations have by default; false: every put goes to the store and its changelog).
 * Always processing.guarantee=exactly_once_v2; the store has its changelog topic (the default).
 *
 * Prints `running <epoch ms>` each time the instance reaches RUNNING and `first-record <epoch ms>`
 * when the processor gets its first record; exits 0 after SIGTERM (closes the instance), 1 when the
 * instance fails.
 */
public final class KafkaStreamsPeer {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String STORE = "count-and-sum";
  private static volatile boolean firstRecord = true;

  @JsonIgnoreProperties(ignoreUnknown = true)
  record In(String k, long n) {}

  record Out(String k, long n, long count, long sum) {}

  /** Count and sum per key in the store (16 bytes: count, sum); one output per input. */
  static final class CountAndSum implements Processor<String, byte[], String, String> {
    private ProcessorContext<String, String> context;
    private KeyValueStore<String, byte[]> store;

    @Override
    public void init(ProcessorContext<String, String> context) {
      this.context = context;
      this.store = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
      if (firstRecord) {
        firstRecord = false;
        System.out.println("first-record " + System.currentTimeMillis());
      }
      try {
        In e = JSON.readValue(record.value(), In.class);
        byte[] old = store.get(e.k());
        long count = 1;
        long sum = e.n();
        if (old != null) {
          ByteBuffer b = ByteBuffer.wrap(old);
          count += b.getLong();
          sum += b.getLong();
        }
        store.put(e.k(), ByteBuffer.allocate(16).putLong(count).putLong(sum).array());
        String out = JSON.writeValueAsString(new Out(e.k(), e.n(), count, sum));
        context.forward(record.withKey(e.k()).withValue(out));
      } catch (IOException ex) {
        throw new UncheckedIOException(ex);
      }
    }
  }

  private static String env(String name, String fallback) {
    String v = System.getenv(name);
    if (v == null || v.isBlank()) {
      if (fallback == null) throw new IllegalArgumentException(name + " is not set");
      return fallback;
    }
    return v;
  }

  public static void main(String[] args) throws InterruptedException {
    String store = env("STORE", "rocksdb");
    KeyValueBytesStoreSupplier supplier =
        switch (store) {
          case "rocksdb" -> Stores.persistentKeyValueStore(STORE);
          case "memory" -> Stores.inMemoryKeyValueStore(STORE);
          default -> throw new IllegalArgumentException("STORE must be rocksdb or memory, got " + store);
        };
    StoreBuilder<KeyValueStore<String, byte[]>> storeBuilder =
        Stores.keyValueStoreBuilder(supplier, Serdes.String(), Serdes.ByteArray());
    if (Boolean.parseBoolean(env("CACHE", "true"))) storeBuilder = storeBuilder.withCachingEnabled();

    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(storeBuilder);
    builder.stream(env("INPUT", null), Consumed.with(Serdes.String(), Serdes.ByteArray()))
        .process(CountAndSum::new, STORE)
        .to(env("OUTPUT", null), Produced.with(Serdes.String(), Serdes.String()));

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("APP_ID", null));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("KAFKA_BROKERS", null));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, env("COMMIT_MS", "1000"));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, env("THREADS", "1"));
    p.put(StreamsConfig.STATE_DIR_CONFIG, env("STATE_DIR", null));
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    KafkaStreams streams = new KafkaStreams(builder.build(), p);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener(
        (now, before) -> {
          if (now == KafkaStreams.State.RUNNING) System.out.println("running " + System.currentTimeMillis());
          if (now == KafkaStreams.State.ERROR) {
            System.err.println("kafka streams: state " + before + " -> ERROR");
            System.exit(1);
          }
        });
    streams.setUncaughtExceptionHandler(
        e -> {
          System.err.println("kafka streams: " + e);
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(Duration.ofSeconds(20));
                  stopped.countDown();
                }));
    streams.start();
    stopped.await();
  }

  private KafkaStreamsPeer() {}
}
