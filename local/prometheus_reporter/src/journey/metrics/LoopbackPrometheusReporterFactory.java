package journey.metrics;

import java.util.Properties;

import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;
import org.apache.flink.util.PortRange;

/**
 * Flink's Prometheus pull reporter with its HTTP endpoint bound to one address.
 *
 * <p>The stock {@code PrometheusReporterFactory} binds every interface and has no host option;
 * the local stack must listen on 127.0.0.1 only. Configuration (as the stock reporter, plus
 * {@code host}):
 *
 * <pre>
 * metrics.reporter.prom.factory.class: journey.metrics.LoopbackPrometheusReporterFactory
 * metrics.reporter.prom.host: 127.0.0.1      # default 127.0.0.1
 * metrics.reporter.prom.port: 19249-19252    # the first free port of the range is taken
 * </pre>
 */
public class LoopbackPrometheusReporterFactory implements MetricReporterFactory {
    static final String ARG_HOST = "host";
    static final String ARG_PORT = "port";

    @Override
    public MetricReporter createMetricReporter(Properties properties) {
        String host = properties.getProperty(ARG_HOST, "127.0.0.1");
        String ports = properties.getProperty(ARG_PORT, "9249");
        return new LoopbackPrometheusReporter(host, new PortRange(ports));
    }
}
