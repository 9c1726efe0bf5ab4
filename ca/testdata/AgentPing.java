// AgentPing is the Java side of ca's JSSE interop test: a TLS client, as
// the CloudStack agent is, that dials the agent port, sends "ping" and
// expects "pong".
//
//   java AgentPing.java DIR HOST PORT
//
// DIR holds ca.pem (trust anchors) and, optionally, agent.p12 (a PKCS #12
// key store with the agent's key and certificate) whose password is in
// the environment variable KVMPKI_P12_PASS. The server is identified as
// HOST with the HTTPS endpoint identification algorithm. Exit status 0
// means "pong" came back.

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class AgentPing {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        String host = args[1];
        int port = Integer.parseInt(args[2]);

        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        try (InputStream in = Files.newInputStream(dir.resolve("ca.pem"))) {
            int i = 0;
            for (Certificate c : cf.generateCertificates(in)) {
                trust.setCertificateEntry("cloudca." + (i++), c);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);

        KeyManager[] kms = null;
        Path p12 = dir.resolve("agent.p12");
        if (Files.exists(p12)) {
            char[] pass = System.getenv("KVMPKI_P12_PASS").toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = Files.newInputStream(p12)) {
                ks.load(in, pass);
            }
            // SunX509 presents the certificate whatever its key usage, so
            // that the server is the one judging it.
            KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
            kmf.init(ks, pass);
            kms = kmf.getKeyManagers();
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kms, tmf.getTrustManagers(), null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 30000);
            s.setSoTimeout(30000);
            SSLParameters params = s.getSSLParameters();
            params.setEndpointIdentificationAlgorithm("HTTPS");
            params.setServerNames(java.util.List.of());
            s.setSSLParameters(params);
            s.startHandshake();
            OutputStream out = s.getOutputStream();
            out.write("ping\n".getBytes(StandardCharsets.US_ASCII));
            out.flush();
            BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.US_ASCII));
            String line = r.readLine();
            System.out.println("answer: " + line);
            System.exit("pong".equals(line) ? 0 : 1);
        }
    }
}
