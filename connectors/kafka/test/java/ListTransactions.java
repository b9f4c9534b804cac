import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.TransactionListing;

/**
 * An independent view of the broker's transactions (the Java admin client, not kafkajs): prints one
 * line `<transactionalId> <state>` per transactional id whose id starts with args[1].
 * Run with the harness's jars: java -cp '<cache>/libs/*' ListTransactions.java <bootstrap> <prefix>
 */
public class ListTransactions {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    try (Admin admin = Admin.create(p)) {
      var ids = admin.listTransactions().all().get().stream()
          .map(TransactionListing::transactionalId)
          .filter(id -> id.startsWith(args[1]))
          .collect(Collectors.toList());
      if (ids.isEmpty()) return;
      admin.describeTransactions(ids).all().get().forEach((id, d) -> System.out.println(id + " " + d.state()));
    }
  }
}
