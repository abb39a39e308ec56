package msb

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// IdleCommand is what a sandbox started without a command runs: nothing, until it is stopped.
var IdleCommand = []string{"sh", "-c", "while :; do sleep 3600; done"}

// SandboxBuilder is what a new sandbox is to be; it ends with Create, Start or Run.
type SandboxBuilder struct {
	client    *Client
	config    SandboxConfig
	ephemeral *bool
}

// Command sets the workload (default for Start: idle until stopped; required by Run).
func (b *SandboxBuilder) Command(argv ...string) *SandboxBuilder {
	b.config.Command = append([]string{}, argv...)
	return b
}

// Root uses a host directory as the root (read-write); "" is msb's default root.
func (b *SandboxBuilder) Root(hostDirectory string) *SandboxBuilder {
	if hostDirectory == "" {
		b.config.Rootfs = RootfsSource{Kind: "default"}
	} else {
		b.config.Rootfs = RootfsSource{Kind: "bind", Path: &hostDirectory}
	}
	return b
}

func (b *SandboxBuilder) CPUs(cores float64) *SandboxBuilder  { b.config.CPUs = &cores; return b }
func (b *SandboxBuilder) MemoryMiB(mib int64) *SandboxBuilder { b.config.MemoryMib = &mib; return b }
func (b *SandboxBuilder) Env(key, value string) *SandboxBuilder {
	b.config.Env = append(b.config.Env, [2]string{key, value})
	return b
}
func (b *SandboxBuilder) Workdir(dir string) *SandboxBuilder { b.config.Workdir = &dir; return b }

// Mount puts a host directory at guest in the sandbox. (Volumes, quotas and ports: later.)
func (b *SandboxBuilder) Mount(host, guest string, readonly bool) *SandboxBuilder {
	b.config.Volumes = append(b.config.Volumes, VolumeMount{Host: &host, Guest: guest, Readonly: readonly})
	return b
}

// MountWithQuota mounts the host directory host at guest, writable, its writes counted against
// quotaMiB by msb's file server.
func (b *SandboxBuilder) MountWithQuota(host, guest string, quotaMiB int64) *SandboxBuilder {
	b.config.Volumes = append(b.config.Volumes, VolumeMount{Host: &host, Guest: guest, QuotaMib: &quotaMiB})
	return b
}

// Volume mounts the named volume name (msb volume create) at guest.
func (b *SandboxBuilder) Volume(name, guest string, readonly bool) *SandboxBuilder {
	b.config.Volumes = append(b.config.Volumes, VolumeMount{Volume: &name, Guest: guest, Readonly: readonly})
	return b
}

// Publish publishes a port, "[BIND_ADDR:]HOST_PORT[-END]:GUEST_PORT[-END][/udp|/tcp]" as
// msb run -p takes it (the bind address defaults to 127.0.0.1).
func (b *SandboxBuilder) Publish(spec string) *SandboxBuilder {
	b.config.PublishedPorts = append(b.config.PublishedPorts, spec)
	return b
}

// NetRule appends an egress rule, "allow|deny@CIDR[:tcp|udp[:PORTS]]" (first match wins).
func (b *SandboxBuilder) NetRule(rule string) *SandboxBuilder {
	b.config.NetRules = append(b.config.NetRules, rule)
	return b
}

// RootDiskMib sizes the disk holding the writable root's changes (msb run --root-disk;
// default 4096 MiB, sparse): writes past it fail with ENOSPC.
func (b *SandboxBuilder) RootDiskMib(mib int64) *SandboxBuilder {
	b.config.RootDiskMib = &mib
	return b
}

// NetRingFrames sets how many frames each of the network's two rings holds
// (--net-ring-frames; default 1024).
func (b *SandboxBuilder) NetRingFrames(frames int64) *SandboxBuilder {
	b.config.NetRingFrames = &frames
	return b
}

// NoNetwork leaves the sandbox only its loopback interface.
func (b *SandboxBuilder) NoNetwork() *SandboxBuilder {
	yes := true
	b.config.NoNetwork = &yes
	return b
}

func (b *SandboxBuilder) Label(key, value string) *SandboxBuilder {
	b.config.Labels[key] = value
	return b
}
func (b *SandboxBuilder) IdleTimeout(d time.Duration) *SandboxBuilder {
	secs := int64(d / time.Second)
	b.config.IdleTimeoutSecs = &secs
	return b
}
func (b *SandboxBuilder) MaxDuration(d time.Duration) *SandboxBuilder {
	secs := int64(d / time.Second)
	b.config.MaxDurationSecs = &secs
	return b
}

// Ephemeral: removed by the runtime when its run ends (the default for unnamed sandboxes).
func (b *SandboxBuilder) Ephemeral(ephemeral bool) *SandboxBuilder {
	b.ephemeral = &ephemeral
	return b
}

// MetricsInterval sets the sampling interval (at least 100ms); 0 turns metrics off.
func (b *SandboxBuilder) MetricsInterval(d time.Duration) *SandboxBuilder {
	ms := d.Milliseconds()
	b.config.MetricsIntervalMs = &ms
	return b
}

// Config is the configuration as it will be sent.
func (b *SandboxBuilder) Config() SandboxConfig {
	config := b.config
	config.Ephemeral = config.Name == ""
	if b.ephemeral != nil {
		config.Ephemeral = *b.ephemeral
	}
	return config
}

// Create creates the sandbox without starting it.
func (b *SandboxBuilder) Create(ctx context.Context) (*Sandbox, error) {
	return b.client.create(ctx, CreateSandboxRequest{Config: b.Config(), Start: false})
}

// Start creates and starts the sandbox; it returns once the workload runs.
func (b *SandboxBuilder) Start(ctx context.Context) (*Sandbox, error) {
	config := b.Config()
	if len(config.Command) == 0 {
		config.Command = append([]string{}, IdleCommand...)
	}
	return b.client.create(ctx, CreateSandboxRequest{Config: config, Start: true})
}

// Run starts the sandbox with its command and waits for it to end.
func (b *SandboxBuilder) Run(ctx context.Context) (*Sandbox, *WaitResponse, error) {
	if len(b.config.Command) == 0 {
		return nil, nil, &Error{Message: "Run needs a command: .Command(...)", sentinel: ErrInvalidArgument}
	}
	sandbox, err := b.Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	result, err := sandbox.Wait(ctx)
	return sandbox, result, err
}

func (c *Client) create(ctx context.Context, request CreateSandboxRequest) (*Sandbox, error) {
	var info SandboxInfo
	if err := c.call(ctx, "POST", "/v1/sandboxes", request, &info, "create"); err != nil {
		return nil, err
	}
	return &Sandbox{client: c, Name: info.Name, LastInfo: info}, nil
}

// Sandbox is a live handle: every call asks msbd.
type Sandbox struct {
	client *Client
	Name   string
	// LastInfo is what msbd said of the sandbox on the last call that told.
	LastInfo SandboxInfo
}

func (s *Sandbox) post(ctx context.Context, verb string, body any) error {
	var info SandboxInfo
	if err := s.client.call(ctx, "POST", sandboxPath(s.Name, verb), body, &info, ""); err != nil {
		return err
	}
	s.LastInfo = info
	return nil
}

// Inspect asks msbd for the sandbox's configuration, status and runs.
func (s *Sandbox) Inspect(ctx context.Context) (*SandboxInfo, error) {
	var info SandboxInfo
	if err := s.client.call(ctx, "GET", sandboxPath(s.Name), nil, &info, ""); err != nil {
		return nil, err
	}
	s.LastInfo = info
	return &info, nil
}

// Status is the sandbox's status now.
func (s *Sandbox) Status(ctx context.Context) (SandboxStatus, error) {
	info, err := s.Inspect(ctx)
	if err != nil {
		return "", err
	}
	return info.Status, nil
}

// Start begins a new run of the stored command.
func (s *Sandbox) Start(ctx context.Context) error { return s.post(ctx, "start", nil) }

// Stop sends SIGTERM, then SIGKILL after timeout (rounded to seconds; 0 kills at once).
func (s *Sandbox) Stop(ctx context.Context, timeout time.Duration) error {
	secs := int64(timeout / time.Second)
	return s.post(ctx, "stop", StopRequest{TimeoutSecs: &secs, Force: ptr(timeout == 0)})
}

// Kill sends signal to the workload (SIGKILL takes the whole sandbox down).
func (s *Sandbox) Kill(ctx context.Context, signal int) error {
	return s.post(ctx, "kill", KillRequest{Signal: int64(signal)})
}

// Drain refuses new exec sessions, waits for the running ones (at most timeout; 0: as long as
// they run), then stops the sandbox with stopTimeout of grace (0: the default, 10s).
func (s *Sandbox) Drain(ctx context.Context, timeout, stopTimeout time.Duration) error {
	var request DrainRequest
	if timeout > 0 {
		request.TimeoutSecs = ptr(int64(timeout / time.Second))
	}
	if stopTimeout > 0 {
		request.StopTimeoutSecs = ptr(int64(stopTimeout / time.Second))
	}
	return s.post(ctx, "drain", request)
}

// Wait blocks until the run ends (or ctx does); how it ended.
func (s *Sandbox) Wait(ctx context.Context) (*WaitResponse, error) {
	var result WaitResponse
	if err := s.client.call(ctx, "POST", sandboxPath(s.Name, "wait"), nil, &result, ""); err != nil {
		return nil, err
	}
	return &result, nil
}

// Remove removes the sandbox (force: kills it first).
func (s *Sandbox) Remove(ctx context.Context, force bool) error {
	return s.client.Remove(ctx, s.Name, force)
}

// ExecOptions are what an exec may add to a command.
type ExecOptions struct {
	Env     map[string]string
	Workdir string
	// Stdin is fed to a buffered exec (nil: closed at once).
	Stdin []byte
	// Timeout kills a buffered exec after this long (0: none).
	Timeout time.Duration
}

// ExecResult is a finished process: exit code (128 + signal when a signal ended it) and output.
type ExecResult struct {
	ExitCode        int
	Signal          *int
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	TimedOut        bool
}

func pairs(env map[string]string) [][2]string {
	out := make([][2]string, 0, len(env))
	for key, value := range env {
		out = append(out, [2]string{key, value})
	}
	return out
}

// Exec runs argv to its end: its exit code and output (each cut at 16 MiB, flagged).
func (s *Sandbox) Exec(ctx context.Context, argv []string, options *ExecOptions) (*ExecResult, error) {
	if options == nil {
		options = &ExecOptions{}
	}
	request := ExecRequest{Argv: argv, Env: pairs(options.Env)}
	if options.Workdir != "" {
		request.Workdir = &options.Workdir
	}
	if options.Stdin != nil {
		request.Stdin = ptr(base64.StdEncoding.EncodeToString(options.Stdin))
	}
	if options.Timeout > 0 {
		ms := options.Timeout.Milliseconds()
		if ms < 1 {
			ms = 1
		}
		request.TimeoutMs = &ms
	}
	var answer ExecResponse
	if err := s.client.call(ctx, "POST", sandboxPath(s.Name, "exec"), request, &answer, ""); err != nil {
		return nil, err
	}
	stdout, err := base64.StdEncoding.DecodeString(answer.Stdout)
	if err != nil {
		return nil, err
	}
	stderr, err := base64.StdEncoding.DecodeString(answer.Stderr)
	if err != nil {
		return nil, err
	}
	result := &ExecResult{ExitCode: int(answer.ExitCode), Stdout: stdout, Stderr: stderr,
		StdoutTruncated: answer.StdoutTruncated, StderrTruncated: answer.StderrTruncated, TimedOut: answer.TimedOut}
	if answer.Signal != nil {
		result.Signal = ptr(int(*answer.Signal))
	}
	return result, nil
}

// StreamOptions are how a streaming exec is wired.
type StreamOptions struct {
	Env     map[string]string
	Workdir string
	// NoStdin closes stdin at once.
	NoStdin bool
	// Pty runs the process under a pseudo-terminal of this size.
	Pty *TerminalSize
}

// ExecStream starts argv with stdin open; Recv its output as it is written.
func (s *Sandbox) ExecStream(ctx context.Context, argv []string, options *StreamOptions) (*Process, error) {
	if options == nil {
		options = &StreamOptions{}
	}
	spec := SessionExec{Argv: argv, Env: pairs(options.Env), Stdin: ptr(!options.NoStdin), Pty: options.Pty}
	if options.Workdir != "" {
		spec.Workdir = &options.Workdir
	}
	return openProcess(ctx, s.client, s.Name, map[string]any{"exec": spec})
}

// Attach follows the main workload: its output from now on, its exit; stdin goes to it.
func (s *Sandbox) Attach(ctx context.Context) (*Process, error) {
	return openProcess(ctx, s.client, s.Name, map[string]any{"attach": struct{}{}})
}

// Metrics is the latest sample (ErrMetricsDisabled; ErrMetricsUnavailable before the first).
func (s *Sandbox) Metrics(ctx context.Context) (*MetricsReport, error) {
	var report MetricsReport
	if err := s.client.call(ctx, "GET", sandboxPath(s.Name, "metrics"), nil, &report, "metrics"); err != nil {
		return nil, err
	}
	return &report, nil
}

// MetricsStream reports this sandbox every interval while it runs.
func (s *Sandbox) MetricsStream(ctx context.Context, interval time.Duration) (*MetricsStream, error) {
	return s.client.MetricsStream(ctx, interval, s.Name)
}

// MetricsHistory is the stored samples from since to until (zero: now), step apart (0: msbd's
// choice).
func (s *Sandbox) MetricsHistory(ctx context.Context, since, until time.Time, step time.Duration) (*HistoryResponse, error) {
	var history HistoryResponse
	if err := s.client.call(ctx, "GET", sandboxPath(s.Name, "history")+"?"+window(since, until, step), nil, &history, ""); err != nil {
		return nil, err
	}
	return &history, nil
}

func ptr[T any](v T) *T { return &v }

// OutputChunk is one piece of a process's output.
type OutputChunk struct {
	Stream OutputStream
	Data   []byte
}

// Process is a process started by ExecStream (or an attach): Write its stdin, Recv its output,
// Wait for its exit. Close hangs up (a process still running is killed).
type Process struct {
	conn   net.Conn
	lines  *bufio.Reader
	mu     sync.Mutex
	Pid    int64
	done   bool
	result ExecResult
}

type sessionEvent struct {
	Started    *struct{ Pid int64 }            `json:"started"`
	ExecFailed *struct{ Kind, Message string } `json:"exec_failed"`
	Output     *struct {
		Stream OutputStream
		Data   string
	} `json:"output"`
	Exited *struct{ Code, Signal *int64 } `json:"exited"`
	Error  *string                        `json:"error"`
}

func openProcess(ctx context.Context, c *Client, name string, first any) (*Process, error) {
	conn, reader, err := c.upgrade(ctx, sandboxPath(name, "session"), "msb-session-json")
	if err != nil {
		return nil, err
	}
	p := &Process{conn: conn, lines: reader}
	if err := p.send(first); err != nil {
		conn.Close()
		return nil, err
	}
	if _, isExec := first.(map[string]any)["exec"]; !isExec {
		return p, nil
	}
	event, err := p.next()
	switch {
	case err != nil:
		conn.Close()
		return nil, err
	case event.Started != nil:
		p.Pid = event.Started.Pid
		return p, nil
	case event.ExecFailed != nil:
		conn.Close()
		code := map[string]int64{"not_found": 127, "permission_denied": 126}[event.ExecFailed.Kind]
		if code == 0 {
			code = 125
		}
		return nil, &Error{Message: event.ExecFailed.Message, Kind: "start_failed", ExitCode: &code, sentinel: ErrStartFailed}
	case event.Error != nil:
		conn.Close()
		return nil, &Error{Message: *event.Error, sentinel: ErrConflict}
	}
	conn.Close()
	return nil, fmt.Errorf("unexpected first session event")
}

func (p *Process) send(message any) error {
	line, err := json.Marshal(message)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = p.conn.Write(append(line, '\n'))
	return err
}

func (p *Process) next() (*sessionEvent, error) {
	line, err := p.lines.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Message: "the session ended without an exit status", sentinel: ErrInternal}
		}
		return nil, err
	}
	var event sessionEvent
	if err := json.Unmarshal(line, &event); err != nil {
		return nil, err
	}
	return &event, nil
}

// Write sends bytes to the process's stdin.
func (p *Process) Write(data []byte) (int, error) {
	if err := p.send(map[string]string{"stdin": base64.StdEncoding.EncodeToString(data)}); err != nil {
		return 0, err
	}
	return len(data), nil
}

// CloseStdin closes the process's stdin.
func (p *Process) CloseStdin() error { return p.send(map[string]bool{"stdin_eof": true}) }

// Resize tells a pty session its terminal's new size.
func (p *Process) Resize(rows, cols int) error {
	return p.send(map[string]TerminalSize{"resize": {Rows: int64(rows), Cols: int64(cols)}})
}

// Signal sends a signal to the process.
func (p *Process) Signal(signal int) error { return p.send(map[string]int{"signal": signal}) }

// Recv is the next chunk of output; io.EOF once the process has ended (then see Wait).
func (p *Process) Recv() (*OutputChunk, error) {
	for !p.done {
		event, err := p.next()
		if err != nil {
			p.done = true
			return nil, err
		}
		switch {
		case event.Output != nil:
			data, err := base64.StdEncoding.DecodeString(event.Output.Data)
			if err != nil {
				return nil, err
			}
			return &OutputChunk{Stream: event.Output.Stream, Data: data}, nil
		case event.Exited != nil:
			p.done = true
			if event.Exited.Signal != nil {
				p.result.Signal = ptr(int(*event.Exited.Signal))
			}
			if event.Exited.Code != nil {
				p.result.ExitCode = int(*event.Exited.Code)
			} else if p.result.Signal != nil {
				p.result.ExitCode = 128 + *p.result.Signal
			}
		case event.Error != nil:
			p.done = true
			return nil, &Error{Message: *event.Error, sentinel: ErrInternal}
		}
	}
	return nil, io.EOF
}

// Wait reads to the end: the exit code and the output not yet received.
func (p *Process) Wait() (*ExecResult, error) {
	for {
		chunk, err := p.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if chunk.Stream == OutputStreamStdout {
			p.result.Stdout = append(p.result.Stdout, chunk.Data...)
		} else {
			p.result.Stderr = append(p.result.Stderr, chunk.Data...)
		}
	}
	p.Close()
	result := p.result
	return &result, nil
}

// Close hangs up; a process still running is killed.
func (p *Process) Close() error { return p.conn.Close() }
