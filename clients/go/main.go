// An Agent Factory client in Go: what a user copies to start. It talks to the gateway only, first
// with a client certificate (mTLS), then with a JWT, and shows the calls most programs need: list
// templates, run an agent streaming its events, create + watch + cancel another, and handle errors
// by their gRPC status code.
//
//	AF_GATEWAY=localhost:8443 AF_CA=build/certs/ca/bundle.pem \
//	AF_CERT=build/certs/clients/operator/cert.pem AF_KEY=build/certs/clients/operator/key.pem \
//	AF_TOKEN=$(make -s mesh-token ROLE=viewer) go run .
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	registryv1 "agentfactory.local/gen/go/agentfactory/registry/v1"
	schedulerv1 "agentfactory.local/gen/go/agentfactory/scheduler/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Every call carries a deadline: a gateway that cannot answer must not hang the program.
const callTimeout = 30 * time.Second

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// dial opens a TLS channel to the gateway, verified against the mesh CA; with certFile/keyFile it
// presents a client certificate (mTLS), without them the caller authenticates with a JWT instead.
func dial(addr, caFile, certFile, keyFile string) (*grpc.ClientConn, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

func withDeadline() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

func listTemplates(ctx context.Context, reg registryv1.RegistryServiceClient) ([]string, error) {
	reply, err := reg.ListTemplates(ctx, &registryv1.ListTemplatesRequest{})
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, t := range reply.GetTemplates() {
		names = append(names, t.GetManifest().GetName())
	}
	return names, nil
}

func state(s schedulerv1.AgentState) string {
	return strings.TrimPrefix(s.String(), "AGENT_STATE_")
}

// runAgent runs a template to its end, printing each event as it streams in.
func runAgent(sched schedulerv1.SchedulerServiceClient, name string, input []byte) error {
	ctx, cancel := withDeadline()
	defer cancel()
	stream, err := sched.RunAgent(ctx, &schedulerv1.RunAgentRequest{TemplateName: name, Input: input})
	if err != nil {
		return err
	}
	var output []byte
	final := schedulerv1.AgentState_AGENT_STATE_UNSPECIFIED
	for {
		event, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch e := event.GetEvent().(type) {
		case *schedulerv1.RunAgentResponse_Agent:
			final = e.Agent.GetState()
			fmt.Printf("event: agent %s\n", state(final))
		case *schedulerv1.RunAgentResponse_Output:
			output = append(output, e.Output.GetData()...)
			fmt.Printf("event: output %d bytes\n", len(e.Output.GetData()))
		case *schedulerv1.RunAgentResponse_Log:
			fmt.Printf("event: log %s\n", e.Log.GetMessage())
		}
	}
	fmt.Printf("run %s: %s output %q\n", name, state(final), output)
	return nil
}

// createWatchCancel creates an agent, watches it, cancels it once the watch shows it accepted, and
// reads the watch to its end (the server closes it when the agent is final).
func createWatchCancel(sched schedulerv1.SchedulerServiceClient, name string, input []byte) error {
	ctx, cancel := withDeadline()
	defer cancel()
	created, err := sched.CreateAgent(ctx, &schedulerv1.CreateAgentRequest{TemplateName: name, Input: input})
	if err != nil {
		return err
	}
	id := created.GetAgent().GetId()
	watch, err := sched.WatchAgent(ctx, &schedulerv1.WatchAgentRequest{Id: id})
	if err != nil {
		return err
	}
	final, cancelled := schedulerv1.AgentState_AGENT_STATE_UNSPECIFIED, false
	for {
		event, err := watch.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if agent := event.GetAgent(); agent != nil {
			final = agent.GetState()
			if !cancelled {
				if _, err := sched.CancelAgent(ctx, &schedulerv1.CancelAgentRequest{Id: id}); err != nil {
					return err
				}
				cancelled = true
			}
		}
	}
	fmt.Printf("create+watch+cancel %s: %s\n", name, state(final))
	return nil
}

// expectCode reports an error's gRPC status code: how a program tells "not allowed" from "no such
// thing" from "try again", whatever the message says.
func expectCode(what string, err error, want codes.Code) error {
	got := status.Code(err)
	fmt.Printf("%s: %s\n", what, strings.ToUpper(toSnake(got.String())))
	if got != want {
		return fmt.Errorf("%s: want %s, got %v", what, want, err)
	}
	return nil
}

// toSnake turns Go's code names (PermissionDenied) into the protocol's (PERMISSION_DENIED).
func toSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func run() error {
	gateway := env("AF_GATEWAY", "localhost:8443")
	ca := env("AF_CA", "build/certs/ca/bundle.pem")

	// 1. mTLS: the client certificate names the role (operator may run agents).
	conn, err := dial(gateway, ca, env("AF_CERT", "build/certs/clients/operator/cert.pem"),
		env("AF_KEY", "build/certs/clients/operator/key.pem"))
	if err != nil {
		return err
	}
	defer conn.Close()
	registry, scheduler := registryv1.NewRegistryServiceClient(conn), schedulerv1.NewSchedulerServiceClient(conn)

	ctx, cancel := withDeadline()
	defer cancel()
	names, err := listTemplates(ctx, registry)
	if err != nil {
		return err
	}
	fmt.Printf("templates (mTLS): %s\n", strings.Join(names, " "))

	if err := runAgent(scheduler, "echo-upper", []byte("hello")); err != nil {
		return err
	}
	if err := createWatchCancel(scheduler, env("AF_CANCEL_TEMPLATE", "prime-sieve"),
		[]byte(env("AF_CANCEL_INPUT", `{"n": 50000000}`))); err != nil {
		return err
	}
	_, err = scheduler.GetAgent(ctx, &schedulerv1.GetAgentRequest{Id: "no-such-agent"})
	if err := expectCode("GetAgent of an unknown id", err, codes.NotFound); err != nil {
		return err
	}

	// 2. JWT: TLS without a client certificate, the token in the authorization header.
	token := os.Getenv("AF_TOKEN")
	if token == "" {
		fmt.Println("AF_TOKEN not set: the JWT part is skipped")
		return nil
	}
	jwtConn, err := dial(gateway, ca, "", "")
	if err != nil {
		return err
	}
	defer jwtConn.Close()
	jctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	names, err = listTemplates(jctx, registryv1.NewRegistryServiceClient(jwtConn))
	if err != nil {
		return err
	}
	fmt.Printf("templates (JWT): %s\n", strings.Join(names, " "))
	// A viewer may read but not create: the gateway answers PERMISSION_DENIED.
	_, err = schedulerv1.NewSchedulerServiceClient(jwtConn).CreateAgent(jctx,
		&schedulerv1.CreateAgentRequest{TemplateName: "echo-upper"})
	return expectCode("CreateAgent as a viewer", err, codes.PermissionDenied)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
