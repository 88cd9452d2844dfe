// An Agent Factory client in TypeScript (Node, @grpc/grpc-js, stubs from ts-proto): what a user copies
// to start. It talks to the gateway only, first with a client certificate (mTLS), then with a JWT, and
// shows the calls most programs need: list templates, run an agent streaming its events, create +
// watch + cancel another, and handle errors by their gRPC status code.
//
//   AF_GATEWAY=localhost:8443 AF_CA=build/certs/ca/bundle.pem \
//   AF_CERT=build/certs/clients/operator/cert.pem AF_KEY=build/certs/clients/operator/key.pem \
//   AF_TOKEN=$(make -s mesh-token ROLE=viewer) node clients/ts/dist/clients/ts/main.js
import { readFileSync } from "node:fs";
import { ChannelCredentials, ClientReadableStream, Metadata, ServiceError, status } from "@grpc/grpc-js";
import {
  ListTemplatesRequest,
  RegistryServiceClient,
} from "../../build/clients-gen/ts/agentfactory/registry/v1/registry_service";
import {
  AgentState,
  agentStateToJSON,
  CancelAgentRequest,
  CreateAgentRequest,
  GetAgentRequest,
  RunAgentRequest,
  RunAgentResponse,
  SchedulerServiceClient,
  WatchAgentRequest,
  WatchAgentResponse,
} from "../../build/clients-gen/ts/agentfactory/scheduler/v1/scheduler_service";

// Every call carries a deadline: a gateway that cannot answer must not hang the program.
const CALL_TIMEOUT_MS = 30_000;
const deadline = () => ({ deadline: new Date(Date.now() + CALL_TIMEOUT_MS) });
const env = (name: string, fallback: string) => process.env[name] || fallback;
const state = (s: AgentState) => agentStateToJSON(s).replace("AGENT_STATE_", "");

// TLS verified against the mesh CA; with a certificate and key the client presents them (mTLS),
// without them it authenticates with a JWT in the authorization header instead.
function credentials(ca: string, cert?: string, key?: string): ChannelCredentials {
  return cert && key
    ? ChannelCredentials.createSsl(readFileSync(ca), readFileSync(key), readFileSync(cert))
    : ChannelCredentials.createSsl(readFileSync(ca));
}

// grpc-js calls take a callback; a promise reads better in a program that does one thing after another.
function unary<Req, Res>(
  call: (req: Req, md: Metadata, opts: object, cb: (err: ServiceError | null, res: Res) => void) => unknown,
  req: Req,
  md: Metadata = new Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) => call(req, md, deadline(), (err, res) => (err ? reject(err) : resolve(res))));
}

async function listTemplates(registry: RegistryServiceClient, md?: Metadata): Promise<string[]> {
  const reply = await unary(registry.listTemplates.bind(registry), ListTemplatesRequest.fromPartial({}), md);
  return reply.templates.map((t) => t.manifest?.name ?? "");
}

async function runAgent(scheduler: SchedulerServiceClient, name: string, input: Buffer): Promise<void> {
  const stream: ClientReadableStream<RunAgentResponse> = scheduler.runAgent(
    RunAgentRequest.fromPartial({ templateName: name, input }),
    new Metadata(),
    deadline(),
  );
  const output: Buffer[] = [];
  let final = AgentState.AGENT_STATE_UNSPECIFIED;
  for await (const event of stream as AsyncIterable<RunAgentResponse>) {
    if (event.agent) {
      final = event.agent.state;
      console.log(`event: agent ${state(final)}`);
    } else if (event.output) {
      output.push(Buffer.from(event.output.data));
      console.log(`event: output ${event.output.data.length} bytes`);
    } else if (event.log) {
      console.log(`event: log ${event.log.message}`);
    }
  }
  console.log(`run ${name}: ${state(final)} output ${JSON.stringify(Buffer.concat(output).toString())}`);
}

// Creates an agent, watches it, cancels it once the watch shows it accepted, and reads the watch to
// its end (the server closes it when the agent is final).
async function createWatchCancel(scheduler: SchedulerServiceClient, name: string, input: Buffer): Promise<void> {
  const created = await unary(
    scheduler.createAgent.bind(scheduler),
    CreateAgentRequest.fromPartial({ templateName: name, input }),
  );
  const id = created.agent!.id;
  const watch = scheduler.watchAgent(WatchAgentRequest.fromPartial({ id }), new Metadata(), deadline());
  let final = AgentState.AGENT_STATE_UNSPECIFIED;
  let cancelled = false;
  for await (const event of watch as AsyncIterable<WatchAgentResponse>) {
    if (event.agent) {
      final = event.agent.state;
      if (!cancelled) {
        cancelled = true;
        await unary(scheduler.cancelAgent.bind(scheduler), CancelAgentRequest.fromPartial({ id }));
      }
    }
  }
  console.log(`create+watch+cancel ${name}: ${state(final)}`);
}

// How a program tells "not allowed" from "no such thing" from "try again": the status code, never
// the message.
async function expectCode(what: string, call: Promise<unknown>, want: status): Promise<void> {
  let got = status.OK;
  try {
    await call;
  } catch (err) {
    got = (err as ServiceError).code;
  }
  console.log(`${what}: ${status[got]}`);
  if (got !== want) throw new Error(`${what}: want ${status[want]}, got ${status[got]}`);
}

async function main(): Promise<void> {
  const gateway = env("AF_GATEWAY", "localhost:8443");
  const ca = env("AF_CA", "build/certs/ca/bundle.pem");

  // 1. mTLS: the client certificate names the role (operator may run agents).
  const mtls = credentials(
    ca,
    env("AF_CERT", "build/certs/clients/operator/cert.pem"),
    env("AF_KEY", "build/certs/clients/operator/key.pem"),
  );
  const registry = new RegistryServiceClient(gateway, mtls);
  const scheduler = new SchedulerServiceClient(gateway, mtls);
  console.log(`templates (mTLS): ${(await listTemplates(registry)).join(" ")}`);
  await runAgent(scheduler, "echo-upper", Buffer.from("hello"));
  await createWatchCancel(
    scheduler,
    env("AF_CANCEL_TEMPLATE", "prime-sieve"),
    Buffer.from(env("AF_CANCEL_INPUT", '{"n": 50000000}')),
  );
  await expectCode(
    "GetAgent of an unknown id",
    unary(scheduler.getAgent.bind(scheduler), GetAgentRequest.fromPartial({ id: "no-such-agent" })),
    status.NOT_FOUND,
  );
  registry.close();
  scheduler.close();

  // 2. JWT: TLS without a client certificate, the token in the authorization header.
  const token = process.env.AF_TOKEN;
  if (!token) {
    console.log("AF_TOKEN not set: the JWT part is skipped");
    return;
  }
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  const tlsOnly = credentials(ca);
  const viewerRegistry = new RegistryServiceClient(gateway, tlsOnly);
  const viewerScheduler = new SchedulerServiceClient(gateway, tlsOnly);
  console.log(`templates (JWT): ${(await listTemplates(viewerRegistry, md)).join(" ")}`);
  // A viewer may read but not create: the gateway answers PERMISSION_DENIED.
  await expectCode(
    "CreateAgent as a viewer",
    unary(viewerScheduler.createAgent.bind(viewerScheduler), CreateAgentRequest.fromPartial({ templateName: "echo-upper" }), md),
    status.PERMISSION_DENIED,
  );
  viewerRegistry.close();
  viewerScheduler.close();
}

main().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
