/** Kept for the harness scripts: the filter lives with the Kafka connector. */
import '../../connectors/kafka/internal/quiet-warnings.ts';
