// An Agent Factory client in Java (grpc-java over Netty): what a user copies to start. It talks to the
// gateway only, first with a client certificate (mTLS), then with a JWT, and shows the calls most
// programs need: list templates, run an agent streaming its events, create + watch + cancel another,
// and handle errors by their gRPC status code.
//
//   AF_GATEWAY=localhost:8443 AF_CA=build/certs/ca/bundle.pem \
//   AF_CERT=build/certs/clients/operator/cert.pem AF_KEY=build/certs/clients/operator/key.pem \
//   AF_TOKEN=$(make -s mesh-token ROLE=viewer) java -jar clients/java/target/agentfactory-client.jar
package local.agentfactory.example;

import com.google.protobuf.ByteString;
import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import local.agentfactory.registry.v1.ListTemplatesRequest;
import local.agentfactory.registry.v1.RegistryServiceGrpc;
import local.agentfactory.scheduler.v1.AgentState;
import local.agentfactory.scheduler.v1.CancelAgentRequest;
import local.agentfactory.scheduler.v1.CreateAgentRequest;
import local.agentfactory.scheduler.v1.GetAgentRequest;
import local.agentfactory.scheduler.v1.RunAgentRequest;
import local.agentfactory.scheduler.v1.RunAgentResponse;
import local.agentfactory.scheduler.v1.SchedulerServiceGrpc;
import local.agentfactory.scheduler.v1.WatchAgentRequest;
import local.agentfactory.scheduler.v1.WatchAgentResponse;

public final class Main {
  // Every call carries a deadline: a gateway that cannot answer must not hang the program.
  private static final long CALL_TIMEOUT_SECONDS = 30;

  private static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }

  private static String state(AgentState s) {
    return s.name().replace("AGENT_STATE_", "");
  }

  // TLS verified against the mesh CA; with a certificate and key the client presents them (mTLS),
  // without them it authenticates with a JWT (see BearerToken) instead.
  private static ManagedChannel dial(String gateway, String ca, String cert, String key) throws IOException {
    TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder().trustManager(new File(ca));
    if (cert != null) {
      tls.keyManager(new File(cert), new File(key));
    }
    ChannelCredentials creds = tls.build();
    return Grpc.newChannelBuilder(gateway, creds).build();
  }

  /** A JWT in the authorization header of every call. */
  private static final class BearerToken extends CallCredentials {
    private final String token;

    BearerToken(String token) {
      this.token = token;
    }

    @Override
    public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      applier.apply(headers);
    }
  }

  private static String listTemplates(RegistryServiceGrpc.RegistryServiceBlockingStub registry) {
    return registry
        .withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS)
        .listTemplates(ListTemplatesRequest.getDefaultInstance())
        .getTemplatesList()
        .stream()
        .map(t -> t.getManifest().getName())
        .collect(Collectors.joining(" "));
  }

  // Runs a template to its end, printing each event as it streams in.
  private static void runAgent(SchedulerServiceGrpc.SchedulerServiceBlockingStub scheduler, String name, byte[] input) {
    Iterator<RunAgentResponse> events =
        scheduler
            .withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS)
            .runAgent(
                RunAgentRequest.newBuilder().setTemplateName(name).setInput(ByteString.copyFrom(input)).build());
    ByteString output = ByteString.EMPTY;
    AgentState last = AgentState.AGENT_STATE_UNSPECIFIED;
    while (events.hasNext()) {
      RunAgentResponse event = events.next();
      switch (event.getEventCase()) {
        case AGENT -> {
          last = event.getAgent().getState();
          System.out.println("event: agent " + state(last));
        }
        case OUTPUT -> {
          output = output.concat(event.getOutput().getData());
          System.out.println("event: output " + event.getOutput().getData().size() + " bytes");
        }
        case LOG -> System.out.println("event: log " + event.getLog().getMessage());
        default -> {}
      }
    }
    System.out.println(
        "run " + name + ": " + state(last) + " output \"" + output.toString(StandardCharsets.UTF_8) + "\"");
  }

  // Creates an agent, watches it, cancels it once the watch shows it accepted, and reads the watch to
  // its end (the server closes it when the agent is final).
  private static void createWatchCancel(
      SchedulerServiceGrpc.SchedulerServiceBlockingStub scheduler, String name, byte[] input) {
    SchedulerServiceGrpc.SchedulerServiceBlockingStub timed =
        scheduler.withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS);
    String id =
        timed
            .createAgent(
                CreateAgentRequest.newBuilder().setTemplateName(name).setInput(ByteString.copyFrom(input)).build())
            .getAgent()
            .getId();
    Iterator<WatchAgentResponse> watch = timed.watchAgent(WatchAgentRequest.newBuilder().setId(id).build());
    AgentState last = AgentState.AGENT_STATE_UNSPECIFIED;
    boolean cancelled = false;
    while (watch.hasNext()) {
      WatchAgentResponse event = watch.next();
      if (event.hasAgent()) {
        last = event.getAgent().getState();
        if (!cancelled) {
          cancelled = true;
          timed.cancelAgent(CancelAgentRequest.newBuilder().setId(id).build());
        }
      }
    }
    System.out.println("create+watch+cancel " + name + ": " + state(last));
  }

  // How a program tells "not allowed" from "no such thing" from "try again": the status code, never
  // the message.
  private static void expectCode(String what, Runnable call, Status.Code want) {
    Status.Code got = Status.Code.OK;
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      got = e.getStatus().getCode();
    }
    System.out.println(what + ": " + got.name());
    if (got != want) {
      throw new IllegalStateException(what + ": want " + want + ", got " + got);
    }
  }

  private static void run() throws IOException, InterruptedException {
    String gateway = env("AF_GATEWAY", "localhost:8443");
    String ca = env("AF_CA", "build/certs/ca/bundle.pem");

    // 1. mTLS: the client certificate names the role (operator may run agents).
    ManagedChannel mtls =
        dial(
            gateway,
            ca,
            env("AF_CERT", "build/certs/clients/operator/cert.pem"),
            env("AF_KEY", "build/certs/clients/operator/key.pem"));
    try {
      SchedulerServiceGrpc.SchedulerServiceBlockingStub scheduler = SchedulerServiceGrpc.newBlockingStub(mtls);
      System.out.println("templates (mTLS): " + listTemplates(RegistryServiceGrpc.newBlockingStub(mtls)));
      runAgent(scheduler, "echo-upper", "hello".getBytes(StandardCharsets.UTF_8));
      createWatchCancel(
          scheduler,
          env("AF_CANCEL_TEMPLATE", "prime-sieve"),
          env("AF_CANCEL_INPUT", "{\"n\": 50000000}").getBytes(StandardCharsets.UTF_8));
      expectCode(
          "GetAgent of an unknown id",
          () ->
              scheduler
                  .withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS)
                  .getAgent(GetAgentRequest.newBuilder().setId("no-such-agent").build()),
          Status.Code.NOT_FOUND);
    } finally {
      mtls.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }

    // 2. JWT: TLS without a client certificate, the token in the authorization header.
    String token = System.getenv("AF_TOKEN");
    if (token == null || token.isEmpty()) {
      System.out.println("AF_TOKEN not set: the JWT part is skipped");
      return;
    }
    ManagedChannel tlsOnly = dial(gateway, ca, null, null);
    try {
      BearerToken jwt = new BearerToken(token);
      System.out.println(
          "templates (JWT): " + listTemplates(RegistryServiceGrpc.newBlockingStub(tlsOnly).withCallCredentials(jwt)));
      // A viewer may read but not create: the gateway answers PERMISSION_DENIED.
      SchedulerServiceGrpc.SchedulerServiceBlockingStub viewer =
          SchedulerServiceGrpc.newBlockingStub(tlsOnly)
              .withCallCredentials(jwt)
              .withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS);
      expectCode(
          "CreateAgent as a viewer",
          () -> viewer.createAgent(CreateAgentRequest.newBuilder().setTemplateName("echo-upper").build()),
          Status.Code.PERMISSION_DENIED);
    } finally {
      tlsOnly.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  public static void main(String[] args) {
    try {
      run();
    } catch (Exception e) {
      System.err.println("error: " + e.getMessage());
      System.exit(1);
    }
  }
}
