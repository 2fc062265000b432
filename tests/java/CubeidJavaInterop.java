/*
 * java-spiffe (unchanged, from Maven) against cubeid-agent: compiled with
 * javac by tests/interop-java.sh at test time.  Prints TAP lines
 * ("ok - ..." / "not ok - ..."); the script numbers and counts them.
 *
 *   all SOCKET WANT_ID PORTFILE   every Workload API call, DefaultX509Source
 *                                 and DefaultJwtSource, a watch across two
 *                                 X.509 rotations; then an mTLS server
 *                                 (java-spiffe-provider) that accepts only
 *                                 WANT_ID, its port in PORTFILE
 *   client SOCKET PORT SERVER_ID  mTLS client that accepts only SERVER_ID,
 *                                 then one that accepts another ID (must fail)
 *
 * One JVM per role: starting a JVM with gRPC and Netty is the expensive part.
 */
import io.spiffe.bundle.jwtbundle.JwtBundleSet;
import io.spiffe.bundle.x509bundle.X509BundleSet;
import io.spiffe.provider.SpiffeSslContextFactory;
import io.spiffe.spiffeid.SpiffeId;
import io.spiffe.spiffeid.TrustDomain;
import io.spiffe.svid.jwtsvid.JwtSvid;
import io.spiffe.svid.x509svid.X509Svid;
import io.spiffe.svid.x509svid.X509SvidValidator;
import io.spiffe.workloadapi.DefaultJwtSource;
import io.spiffe.workloadapi.DefaultWorkloadApiClient;
import io.spiffe.workloadapi.DefaultX509Source;
import io.spiffe.workloadapi.JwtSource;
import io.spiffe.workloadapi.JwtSourceOptions;
import io.spiffe.workloadapi.Watcher;
import io.spiffe.workloadapi.WorkloadApiClient;
import io.spiffe.workloadapi.X509Context;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;

public final class CubeidJavaInterop {
	private static int failures;

	private interface Check {
		String run() throws Exception;
	}

	/* Run one check: "ok - name: detail", or "not ok - name: the exception". */
	private static void check(String name, Check c) {
		try {
			String detail = c.run();
			System.out.println("ok - " + name + (detail == null ? "" : ": " + detail));
		} catch (Throwable t) {
			failures++;
			System.out.println("not ok - " + name + ": " + t);
			for (Throwable x = t.getCause(); x != null; x = x.getCause())
				System.out.println("#   caused by " + x);
		}
		System.out.flush();
	}

	private static void require(boolean cond, String what) {
		if (!cond)
			throw new AssertionError(what);
	}

	private static String addr(String socket) {
		return "unix:" + socket;
	}

	public static void main(String[] args) throws Exception {
		if (args.length == 4 && args[0].equals("all"))
			all(args[1], SpiffeId.parse(args[2]), Path.of(args[3]));
		else if (args.length == 4 && args[0].equals("client"))
			client(args[1], Integer.parseInt(args[2]), SpiffeId.parse(args[3]));
		else {
			System.err.println("usage: all SOCKET WANT_ID PORTFILE | client SOCKET PORT SERVER_ID");
			System.exit(2);
		}
		System.exit(failures == 0 ? 0 : 1);
	}

	private static void all(String socket, SpiffeId want, Path portFile) throws Exception {
		TrustDomain td = want.getTrustDomain();
		WorkloadApiClient client = DefaultWorkloadApiClient.newClient(
		        DefaultWorkloadApiClient.ClientOptions.builder().spiffeSocketPath(addr(socket)).build());

		check("fetchX509Context", () -> {
			X509Context ctx = client.fetchX509Context();
			X509Svid svid = ctx.getDefaultSvid();
			require(svid.getSpiffeId().equals(want), "SPIFFE ID " + svid.getSpiffeId());
			X509SvidValidator.verifyChain(svid.getChain(), ctx.getX509BundleSet());
			return svid.getSpiffeId() + ", chain verifies against the served bundle";
		});
		check("fetchX509Bundles", () -> {
			X509BundleSet set = client.fetchX509Bundles();
			int n = set.getBundleForTrustDomain(td).getX509Authorities().size();
			require(n > 0, "no X.509 authorities");
			return n + " authorities for " + td;
		});
		String[] token = new String[1];
		check("fetchJwtSvid, one audience", () -> {
			JwtSvid s = client.fetchJwtSvid("java-one");
			require(s.getSpiffeId().equals(want), "SPIFFE ID " + s.getSpiffeId());
			require(s.getAudience().equals(Set.of("java-one")), "aud " + s.getAudience());
			token[0] = s.getToken();
			return null;
		});
		check("fetchJwtSvid, two audiences", () -> {
			JwtSvid s = client.fetchJwtSvid("java-one", "java-two");
			require(s.getAudience().equals(Set.of("java-one", "java-two")), "aud " + s.getAudience());
			return null;
		});
		check("fetchJwtBundles, and the JWT-SVID verifies with them", () -> {
			JwtBundleSet set = client.fetchJwtBundles();
			require(!set.getBundleForTrustDomain(td).getJwtAuthorities().isEmpty(), "no JWT authorities");
			JwtSvid s = JwtSvid.parseAndValidate(token[0], set, Set.of("java-one"));
			require(s.getSpiffeId().equals(want), "SPIFFE ID " + s.getSpiffeId());
			return null;
		});
		check("validateJwtSvid", () -> {
			JwtSvid s = client.validateJwtSvid(token[0], "java-one");
			require(s.getSpiffeId().equals(want), "SPIFFE ID " + s.getSpiffeId());
			return null;
		});
		check("validateJwtSvid refuses another audience", () -> {
			try {
				client.validateJwtSvid(token[0], "someone-else");
			} catch (Exception e) {
				return "refused: " + e.getMessage();
			}
			throw new AssertionError("accepted a token for another audience");
		});

		/* Rotations: a watch and a DefaultX509Source, side by side. */
		Set<BigInteger> watched = ConcurrentHashMap.newKeySet(), sourced = ConcurrentHashMap.newKeySet();
		Throwable[] watchErr = new Throwable[1];
		client.watchX509Context(new Watcher<X509Context>() {
			public void onUpdate(X509Context ctx) {
				watched.add(ctx.getDefaultSvid().getLeaf().getSerialNumber());
			}

			public void onError(Throwable t) {
				watchErr[0] = t;
			}
		});
		DefaultX509Source[] x509Source = new DefaultX509Source[1];
		check("DefaultX509Source", () -> {
			DefaultX509Source.X509SourceOptions o = DefaultX509Source.X509SourceOptions.builder()
			        .spiffeSocketPath(addr(socket)).initTimeout(Duration.ofSeconds(30)).build();
			x509Source[0] = DefaultX509Source.newSource(o);
			X509Svid s = x509Source[0].getX509Svid();
			require(s.getSpiffeId().equals(want), "SPIFFE ID " + s.getSpiffeId());
			X509SvidValidator.verifyChain(s.getChain(), x509Source[0]);
			return s.getSpiffeId().toString();
		});
		check("DefaultJwtSource", () -> {
			try (JwtSource src = DefaultJwtSource.newSource(JwtSourceOptions.builder()
			             .spiffeSocketPath(addr(socket)).initTimeout(Duration.ofSeconds(30)).build())) {
				JwtSvid s = src.fetchJwtSvid("java-source");
				JwtSvid v = JwtSvid.parseAndValidate(s.getToken(), src, Set.of("java-source"));
				require(v.getSpiffeId().equals(want), "SPIFFE ID " + v.getSpiffeId());
				return "its JWT-SVID verifies with its own bundle";
			}
		});
		check("watchX509Context and DefaultX509Source see two rotations", () -> {
			long end = System.nanoTime() + Duration.ofSeconds(60).toNanos();
			while (System.nanoTime() < end && (watched.size() < 3 || sourced.size() < 3)) {
				if (x509Source[0] != null)
					sourced.add(x509Source[0].getX509Svid().getLeaf().getSerialNumber());
				if (watchErr[0] != null)
					throw new AssertionError("watch failed", watchErr[0]);
				Thread.sleep(200);
			}
			require(watched.size() >= 3, "the watch saw " + watched.size() + " SVIDs");
			require(sourced.size() >= 3, "the source held " + sourced.size() + " SVIDs");
			return "watch " + watched.size() + " SVIDs, source " + sourced.size();
		});

		/* The mTLS server: java-spiffe-provider, accepting only want. */
		if (x509Source[0] == null) {
			failures++;
			System.out.println("not ok - mTLS server: no X509Source");
			return;
		}
		SSLContext ctx = SpiffeSslContextFactory.getSslContext(SpiffeSslContextFactory.SslContextOptions.builder()
		        .x509Source(x509Source[0]).acceptedSpiffeIdsSupplier(() -> Set.of(want)).build());
		try (SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket(0, 4,
		             java.net.InetAddress.getLoopbackAddress())) {
			ss.setNeedClientAuth(true);
			ss.setSoTimeout(120 * 1000);
			Path tmp = Path.of(portFile + ".tmp");
			Files.writeString(tmp, Integer.toString(ss.getLocalPort()));
			Files.move(tmp, portFile);
			System.out.println("# mTLS server on port " + ss.getLocalPort());
			System.out.flush();
			/* serve until a client says "bye" (or the timeout) */
			for (boolean done = false; !done;) {
				try (SSLSocket s = (SSLSocket) ss.accept()) {
					s.setSoTimeout(60 * 1000);
					BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
					PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8);
					X509Certificate peer = (X509Certificate) s.getSession().getPeerCertificates()[0];
					String line = in.readLine();
					out.println("hello " + peer.getSubjectAlternativeNames().iterator().next().get(1));
					done = "bye".equals(line);
				} catch (java.net.SocketTimeoutException e) {
					failures++;
					System.out.println("not ok - mTLS server: no client came");
					return;
				} catch (Exception e) {
					System.out.println("# mTLS server: a handshake failed: " + e);
				}
			}
			System.out.println("ok - mTLS server (java-spiffe-provider): served a client with " + want);
		}
		x509Source[0].close();
		client.close();
	}

	private static void client(String socket, int port, SpiffeId serverId) throws Exception {
		DefaultX509Source src = DefaultX509Source.newSource(DefaultX509Source.X509SourceOptions.builder()
		        .spiffeSocketPath(addr(socket)).initTimeout(Duration.ofSeconds(30)).build());
		check("mTLS client refuses a server whose SPIFFE ID it does not accept", () -> {
			SpiffeId other = SpiffeId.parse("spiffe://" + serverId.getTrustDomain() + "/not-the-server");
			SSLContext ctx = SpiffeSslContextFactory.getSslContext(SpiffeSslContextFactory.SslContextOptions.builder()
			        .x509Source(src).acceptedSpiffeIdsSupplier(() -> Set.of(other)).build());
			try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(java.net.InetAddress.getLoopbackAddress(), port)) {
				s.startHandshake();
				new PrintWriter(s.getOutputStream(), true).println("hi");
				new BufferedReader(new InputStreamReader(s.getInputStream())).readLine();
			} catch (javax.net.ssl.SSLException e) {
				return "handshake refused: " + e.getMessage();
			}
			throw new AssertionError("connected to a server with an unaccepted SPIFFE ID");
		});
		check("mTLS client (java-spiffe-provider) to the other JVM", () -> {
			SSLContext ctx = SpiffeSslContextFactory.getSslContext(SpiffeSslContextFactory.SslContextOptions.builder()
			        .x509Source(src).acceptedSpiffeIdsSupplier(() -> Set.of(serverId)).build());
			try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(java.net.InetAddress.getLoopbackAddress(), port)) {
				s.setSoTimeout(60 * 1000);
				PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8);
				BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
				out.println("bye");
				String reply = in.readLine();
				require(reply != null && reply.equals("hello " + src.getX509Svid().getSpiffeId()), "reply " + reply);
				return "the server saw " + reply.substring(6) + ", " + s.getSession().getProtocol();
			}
		});
		src.close();
	}
}
