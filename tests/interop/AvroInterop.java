import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.avro.util.RandomData;

/**
 * The Avro Java reference implementation's side of tests/unit/test_avro_interop.py.
 *
 * <p>Usage: {@code java -cp '.stack/lib/avro/*' tests/interop/AvroInterop.java request.json}.
 * One run does every schema of the request, so the test starts one JVM. For each schema (its
 * own Schema.Parser: event.avsc and normalized_event.avsc define the same names):
 *
 * <ul>
 *   <li>{@code fingerprint64}: SchemaNormalization.parsingFingerprint64 (signed long);
 *   <li>{@code encoded}: each {@code avro_json} record (Avro JSON encoding) read with JsonDecoder
 *       and written with BinaryMessageEncoder, as hex;
 *   <li>{@code decoded}: each {@code single_object_hex} value read with BinaryMessageDecoder and
 *       written in Avro JSON encoding;
 *   <li>{@code random}: {@code random_records} records made by the reference's own RandomData
 *       (seeded), each as BinaryMessageEncoder hex and as Avro JSON.
 * </ul>
 *
 * A record that fails gives {@code {"error": "..."}} in its place, so one bad value does not hide
 * the others. The response is one JSON document on stdout.
 */
public final class AvroInterop {
  private static final HexFormat HEX = HexFormat.of();

  private AvroInterop() {}

  public static void main(String[] args) throws IOException {
    ObjectMapper mapper = new ObjectMapper();
    JsonNode request = mapper.readTree(new File(args[0]));
    long seed = request.path("seed").asLong(1);
    int randomRecords = request.path("random_records").asInt(0);

    ObjectNode response = mapper.createObjectNode();
    response.put("avro_version", Schema.class.getPackage().getImplementationVersion());
    ArrayNode results = response.putArray("schemas");
    for (JsonNode job : request.path("schemas")) {
      Schema schema = new Schema.Parser().parse(new File(job.get("file").asText()));
      ObjectNode result = results.addObject();
      result.put("file", job.get("file").asText());
      result.put("name", schema.getFullName());
      result.put("fingerprint64", SchemaNormalization.parsingFingerprint64(schema));

      BinaryMessageEncoder<Object> encoder = new BinaryMessageEncoder<>(GenericData.get(), schema);
      BinaryMessageDecoder<Object> decoder = new BinaryMessageDecoder<>(GenericData.get(), schema);
      GenericDatumReader<Object> jsonReader = new GenericDatumReader<>(schema);

      ArrayNode encoded = result.putArray("encoded");
      for (JsonNode text : job.path("avro_json")) {
        ObjectNode item = encoded.addObject();
        try {
          Object datum = jsonReader.read(null, DecoderFactory.get().jsonDecoder(schema, text.asText()));
          item.put("hex", hex(encoder.encode(datum)));
        } catch (IOException | RuntimeException e) {
          item.put("error", e.toString());
        }
      }

      ArrayNode decoded = result.putArray("decoded");
      for (JsonNode value : job.path("single_object_hex")) {
        ObjectNode item = decoded.addObject();
        try {
          item.put("avro_json", avroJson(schema, decoder.decode(HEX.parseHex(value.asText()))));
        } catch (IOException | RuntimeException e) {
          item.put("error", e.toString());
        }
      }

      ArrayNode random = result.putArray("random");
      for (Object datum : new RandomData(GenericData.get(), schema, randomRecords, seed)) {
        random.addObject().put("hex", hex(encoder.encode(datum))).put("avro_json", avroJson(schema, datum));
      }
    }
    mapper.writeValue(System.out, response);
  }

  private static String hex(ByteBuffer buffer) {
    byte[] bytes = new byte[buffer.remaining()];
    buffer.get(bytes);
    return HEX.formatHex(bytes);
  }

  private static String avroJson(Schema schema, Object datum) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    JsonEncoder json = EncoderFactory.get().jsonEncoder(schema, out);
    new GenericDatumWriter<>(schema).write(datum, json);
    json.flush();
    return out.toString(StandardCharsets.UTF_8);
  }
}
