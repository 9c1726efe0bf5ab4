// PeerTLS is the Java side of the kvmpki interop checks (package
// internal/peers). It runs with the single-file source launcher:
//
//   java PeerTLS.java client DIR HOST PORT   TLS client: dial 127.0.0.1:PORT,
//                                            identify the server as HOST (HTTPS)
//   java PeerTLS.java server DIR             TLS server on 127.0.0.1, needs a
//                                            client certificate; prints
//                                            "LISTENING <port>" first
//
// DIR holds ca.pem (trust anchors), optionally chain.pem plus key.der (the
// own certificate chain and its PKCS #8 DER key) and crl.pem (CRLs, which
// turn on revocation checking from those CRLs only). Stores live in memory
// only; nothing secret is passed on the command line. Exit status 0 means
// the handshake succeeded; on failure the exception chain goes to stderr
// and the status is 1.

import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.CRL;
import java.security.cert.CertPathBuilder;
import java.security.cert.CertStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.PKIXRevocationChecker;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.EnumSet;
import java.util.List;
import javax.net.ssl.CertPathTrustManagerParameters;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class PeerTLS {
    private static final int TIMEOUT_MS = 30_000;

    public static void main(String[] args) {
        try {
            if (args.length == 4 && args[0].equals("client")) {
                client(Path.of(args[1]), args[2], Integer.parseInt(args[3]));
            } else if (args.length == 2 && args[0].equals("server")) {
                server(Path.of(args[1]));
            } else {
                System.err.println("usage: PeerTLS client DIR HOST PORT | server DIR");
                System.exit(2);
            }
        } catch (Exception e) {
            System.err.println("PeerTLS: handshake refused or failed:");
            for (Throwable c = e; c != null; c = c.getCause()) {
                System.err.println("  " + c);
            }
            System.exit(1);
        }
    }

    static void client(Path dir, String host, int port) throws Exception {
        SSLContext ctx = context(dir);
        Socket raw = new Socket();
        raw.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), TIMEOUT_MS);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(raw, host, port, true)) {
            s.setSoTimeout(TIMEOUT_MS);
            SSLParameters p = s.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(p);
            s.startHandshake();
            // The Go server writes one byte once its side of the
            // handshake is done.
            int b = s.getInputStream().read();
            if (b != 'K') {
                throw new IllegalStateException("server closed the connection after the handshake (read " + b + ")");
            }
            report(s);
        }
    }

    static void server(Path dir) throws Exception {
        SSLContext ctx = context(dir);
        try (SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory()
                .createServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            ss.setNeedClientAuth(true);
            ss.setSoTimeout(TIMEOUT_MS);
            System.out.println("LISTENING " + ss.getLocalPort());
            System.out.flush();
            try (SSLSocket s = (SSLSocket) ss.accept()) {
                s.setSoTimeout(TIMEOUT_MS);
                s.startHandshake();
                OutputStream out = s.getOutputStream();
                out.write('K');
                out.flush();
                report(s);
            }
        }
    }

    static void report(SSLSocket s) throws Exception {
        Certificate[] peer = s.getSession().getPeerCertificates();
        System.out.println("OK " + s.getSession().getProtocol() + " " + s.getSession().getCipherSuite()
                + " peer=" + ((X509Certificate) peer[0]).getSubjectX500Principal());
    }

    static SSLContext context(Path dir) throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");

        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        int i = 0;
        for (Certificate c : certs(cf, dir.resolve("ca.pem"))) {
            trust.setCertificateEntry("ca" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        Path crlFile = dir.resolve("crl.pem");
        if (Files.exists(crlFile)) {
            Collection<? extends CRL> crls;
            try (InputStream in = Files.newInputStream(crlFile)) {
                crls = cf.generateCRLs(in);
            }
            PKIXBuilderParameters params = new PKIXBuilderParameters(trust, new X509CertSelector());
            params.addCertStore(CertStore.getInstance("Collection", new CollectionCertStoreParameters(crls)));
            PKIXRevocationChecker rc = (PKIXRevocationChecker) CertPathBuilder.getInstance("PKIX").getRevocationChecker();
            // CRLs from crl.pem only: no OCSP, no download.
            rc.setOptions(EnumSet.of(PKIXRevocationChecker.Option.PREFER_CRLS,
                    PKIXRevocationChecker.Option.NO_FALLBACK));
            params.addCertPathChecker(rc);
            params.setRevocationEnabled(true);
            tmf.init(new CertPathTrustManagerParameters(params));
        } else {
            tmf.init(trust);
        }

        KeyManager[] kms = null;
        Path chainFile = dir.resolve("chain.pem");
        if (Files.exists(chainFile)) {
            List<Certificate> chain = certs(cf, chainFile);
            byte[] der = Files.readAllBytes(dir.resolve("key.der"));
            PrivateKey key;
            try {
                String alg = chain.get(0).getPublicKey().getAlgorithm();
                key = KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
            } finally {
                Arrays.fill(der, (byte) 0);
            }
            // An in-memory store needs a password; a random one never
            // leaves this process.
            char[] pw = new char[24];
            SecureRandom rnd = new SecureRandom();
            for (int j = 0; j < pw.length; j++) {
                pw[j] = (char) ('a' + rnd.nextInt(26));
            }
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            ks.setKeyEntry("own", key, pw, chain.toArray(new Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            Arrays.fill(pw, '\0');
            kms = kmf.getKeyManagers();
        }

        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kms, tmf.getTrustManagers(), null);
        return ctx;
    }

    static List<Certificate> certs(CertificateFactory cf, Path file) throws Exception {
        try (InputStream in = Files.newInputStream(file)) {
            List<Certificate> list = new ArrayList<>(cf.generateCertificates(in));
            if (list.isEmpty()) {
                throw new IllegalArgumentException(file + " holds no certificate");
            }
            return list;
        }
    }
}
