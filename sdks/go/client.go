// Package msb is the Go client of msbd, the msb sandbox daemon: sandbox lifecycle, exec
// (buffered and streaming), metrics (live, streamed, history) and capacity. Standard library
// only. The API types (models.go) are generated from docs/openapi.json by sdks/codegen.py.
package msb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const startTimeout = 20 * time.Second

// Client is a connection to the msbd of an MSB_HOME, or to a given socket. msbd is started on
// first use if it is not running (for a home; a bare socket is only connected to).
type Client struct {
	home       string // "" for a bare socket
	socketPath string
	msbd       string
	http       *http.Client

	startOnce sync.Mutex
	started   bool
}

// Option configures a Client.
type Option func(*Client)

// WithHome uses the msbd of this MSB_HOME (default $MSB_HOME, else ~/.msb).
func WithHome(home string) Option { return func(c *Client) { c.home = home } }

// WithSocket connects to this socket; without WithHome, msbd is never started.
func WithSocket(path string) Option { return func(c *Client) { c.socketPath = path } }

// WithMsbd starts this msbd binary (default: $MSB_BIN_DIR/msbd, the PATH, /usr/local/lib/msb).
func WithMsbd(path string) Option { return func(c *Client) { c.msbd = path } }

// DefaultHome is $MSB_HOME, else ~/.msb.
func DefaultHome() string {
	if home := os.Getenv("MSB_HOME"); home != "" {
		return home
	}
	dir, _ := os.UserHomeDir()
	return filepath.Join(dir, ".msb")
}

// NewClient makes a client; nothing is connected until the first call.
func NewClient(options ...Option) *Client {
	c := &Client{}
	bare := false
	for _, option := range options {
		option(c)
	}
	if c.socketPath != "" && c.home == "" {
		bare = true
	}
	if !bare {
		if c.home == "" {
			c.home = DefaultHome()
		}
		if c.socketPath == "" {
			c.socketPath = filepath.Join(c.home, "msbd.sock")
		}
	}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socketPath)
		},
		DisableKeepAlives: true,
	}}
	return c
}

// FindMsbd is $MSB_BIN_DIR/msbd, else msbd on the PATH, else msb's install prefix.
func FindMsbd() string {
	if dir := os.Getenv("MSB_BIN_DIR"); dir != "" {
		if path := filepath.Join(dir, "msbd"); isFile(path) {
			return path
		}
	}
	if path, err := exec.LookPath("msbd"); err == nil {
		return path
	}
	if isFile("/usr/local/lib/msb/msbd") {
		return "/usr/local/lib/msb/msbd"
	}
	return ""
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}

func (c *Client) dial() (net.Conn, error) { return net.Dial("unix", c.socketPath) }

func (c *Client) ensureRunning(ctx context.Context) error {
	c.startOnce.Lock()
	defer c.startOnce.Unlock()
	if c.started {
		return nil
	}
	conn, err := c.dial()
	if err == nil {
		conn.Close()
		c.started = true
		return nil
	}
	if errors.Is(err, syscall.EACCES) {
		return unreachable("%s: %v: MSB_HOME belongs to another user", c.socketPath, err)
	}
	if c.home == "" {
		return unreachable("msbd is not answering on %s: %v", c.socketPath, err)
	}
	if err := c.startDaemon(ctx); err != nil {
		return err
	}
	c.started = true
	return nil
}

func (c *Client) startDaemon(ctx context.Context) error {
	msbd := c.msbd
	if msbd == "" {
		msbd = FindMsbd()
	}
	if msbd == "" {
		return unreachable("msbd is not running and was not found (set MSB_BIN_DIR or put msbd on the PATH)")
	}
	if err := os.MkdirAll(c.home, 0o700); err != nil {
		return unreachable("creating %s: %v", c.home, err)
	}
	if info, err := os.Stat(c.home); err == nil && info.Mode().Perm()&0o077 != 0 {
		_ = os.Chmod(c.home, 0o700)
	}
	logPath := filepath.Join(c.home, "msbd.log")
	deadline := time.Now().Add(startTimeout)
	for {
		log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return unreachable("opening %s: %v", logPath, err)
		}
		cmd := exec.Command(msbd)
		cmd.Env = append(os.Environ(), "MSB_HOME="+c.home)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
		log.Close()
		if err != nil {
			return unreachable("starting %s: %v", msbd, err)
		}
		exited := make(chan int, 1)
		go func() {
			_ = cmd.Wait()
			exited <- cmd.ProcessState.ExitCode()
		}()
		again := false
		for !again && time.Now().Before(deadline) {
			if conn, err := c.dial(); err == nil {
				conn.Close()
				return nil
			}
			select {
			case code := <-exited:
				if code != 0 {
					data, _ := os.ReadFile(logPath)
					lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
					if len(lines) > 5 {
						lines = lines[len(lines)-5:]
					}
					return unreachable("msbd exited (%d) before it was ready; last lines of %s:\n%s",
						code, logPath, strings.Join(lines, "\n"))
				}
				// Exit 0: another msbd holds the home's lock and is starting or leaving.
				time.Sleep(50 * time.Millisecond)
				again = true
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		if !again {
			return unreachable("msbd did not answer on %s within %s", c.socketPath, startTimeout)
		}
	}
}

// do sends one request and returns the raw answer (body open) or an unreachable error.
func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if err := c.ensureRunning(ctx); err != nil {
		return nil, err
	}
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reader = bytes.NewReader(data)
	}
	request, err := http.NewRequestWithContext(ctx, method, "http://msbd"+path, reader)
	if err != nil {
		return nil, err
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	response, err := c.http.Do(request)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachable("talking to msbd on %s: %v", c.socketPath, err)
	}
	return response, nil
}

// call is one JSON request; the answer decoded into out (when not nil), or the typed error.
func (c *Client) call(ctx context.Context, method, path string, body, out any, operation string) error {
	response, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	data, err := io.ReadAll(response.Body)
	if err != nil {
		return unreachable("reading msbd's answer: %v", err)
	}
	if response.StatusCode >= 300 {
		return errorOf(response.StatusCode, data, operation)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding msbd's answer to %s: %w", path, err)
		}
	}
	return nil
}

func errorOf(status int, data []byte, operation string) error {
	var body ErrorBody
	if json.Unmarshal(data, &body) != nil || body.Error == "" {
		body.Error = fmt.Sprintf("msbd answered %d: %s", status, strings.TrimSpace(string(data)))
	}
	return errorFrom(status, body, operation)
}

// upgrade opens path with `Upgrade: token`: the connection after the 101 answer.
func (c *Client) upgrade(ctx context.Context, path, token string) (net.Conn, *bufio.Reader, error) {
	if err := c.ensureRunning(ctx); err != nil {
		return nil, nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socketPath)
	if err != nil {
		return nil, nil, unreachable("connecting to %s: %v", c.socketPath, err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: msbd\r\nConnection: upgrade\r\nUpgrade: %s\r\n\r\n", path, token)
	reader := bufio.NewReader(conn)
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		conn.Close()
		return nil, nil, unreachable("reading msbd's answer: %v", err)
	}
	if response.StatusCode != http.StatusSwitchingProtocols {
		data, _ := io.ReadAll(response.Body)
		conn.Close()
		return nil, nil, errorOf(response.StatusCode, data, "")
	}
	return conn, reader, nil
}

func sandboxPath(name string, rest ...string) string {
	return strings.Join(append([]string{"/v1/sandboxes", url.PathEscape(name)}, rest...), "/")
}

// Sandbox builds a new sandbox; an empty name lets msbd pick one (and makes it ephemeral).
func (c *Client) Sandbox(name string) *SandboxBuilder {
	return &SandboxBuilder{client: c, config: SandboxConfig{
		Name: name, Command: []string{}, Env: [][2]string{}, Volumes: []VolumeMount{},
		Labels: map[string]string{}, Rootfs: RootfsSource{Kind: "default"},
	}}
}

// Get is the sandbox named name (ErrNotFound if there is none).
func (c *Client) Get(ctx context.Context, name string) (*Sandbox, error) {
	var info SandboxInfo
	if err := c.call(ctx, "GET", sandboxPath(name), nil, &info, ""); err != nil {
		return nil, err
	}
	return &Sandbox{client: c, Name: info.Name, LastInfo: info}, nil
}

// List is every sandbox (all false: the running ones), as live handles.
func (c *Client) List(ctx context.Context, all bool) ([]*Sandbox, error) {
	path := "/v1/sandboxes"
	if all {
		path += "?all=true"
	}
	var infos []SandboxInfo
	if err := c.call(ctx, "GET", path, nil, &infos, ""); err != nil {
		return nil, err
	}
	out := make([]*Sandbox, 0, len(infos))
	for _, info := range infos {
		out = append(out, &Sandbox{client: c, Name: info.Name, LastInfo: info})
	}
	return out, nil
}

// Remove removes a sandbox that is not running (force: kills it first).
func (c *Client) Remove(ctx context.Context, name string, force bool) error {
	path := sandboxPath(name)
	if force {
		path += "?force=true"
	}
	return c.call(ctx, "DELETE", path, nil, nil, "")
}

// AllSandboxMetrics is the latest sample of every running sandbox (includeEnded: and of ended
// runs), by name.
func (c *Client) AllSandboxMetrics(ctx context.Context, includeEnded bool) (map[string]MetricsReport, error) {
	path := "/v1/metrics"
	if includeEnded {
		path += "?all=true"
	}
	var reports []MetricsReport
	if err := c.call(ctx, "GET", path, nil, &reports, "metrics"); err != nil {
		return nil, err
	}
	out := make(map[string]MetricsReport, len(reports))
	for _, report := range reports {
		out[report.Name] = report
	}
	return out, nil
}

// Capacity is the host's CPUs, memory and disk against what sandboxes were given and use.
func (c *Client) Capacity(ctx context.Context) (*CapacityReport, error) {
	var report CapacityReport
	if err := c.call(ctx, "GET", "/v1/capacity", nil, &report, ""); err != nil {
		return nil, err
	}
	return &report, nil
}

// MetricsStream reports every running sandbox (or name's, when not empty) each interval until
// Close or ctx ends.
func (c *Client) MetricsStream(ctx context.Context, interval time.Duration, name string) (*MetricsStream, error) {
	query := url.Values{"interval_ms": {fmt.Sprint(interval.Milliseconds())}}
	if name != "" {
		query.Set("name", name)
	}
	response, err := c.do(ctx, "GET", "/v1/metrics/stream?"+query.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if response.StatusCode >= 300 {
		defer response.Body.Close()
		data, _ := io.ReadAll(response.Body)
		return nil, errorOf(response.StatusCode, data, "metrics")
	}
	return &MetricsStream{body: response.Body, lines: bufio.NewReaderSize(response.Body, 1<<16)}, nil
}

// MetricsStream yields MetricsReports as msbd sends them.
type MetricsStream struct {
	body  io.Closer
	lines *bufio.Reader
}

// Recv is the next report; io.EOF when the stream ends.
func (s *MetricsStream) Recv() (*MetricsReport, error) {
	for {
		line, err := s.lines.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var report MetricsReport
			if err := json.Unmarshal(line, &report); err != nil {
				return nil, err
			}
			return &report, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Close ends the stream.
func (s *MetricsStream) Close() error { return s.body.Close() }

// FleetHistory is the fleet's stored samples over a window (see Sandbox.MetricsHistory).
func (c *Client) FleetHistory(ctx context.Context, since, until time.Time, step time.Duration) (*HistoryResponse, error) {
	var history HistoryResponse
	err := c.call(ctx, "GET", "/v1/history/fleet?"+window(since, until, step), nil, &history, "")
	return &history, err
}

func window(since, until time.Time, step time.Duration) string {
	query := url.Values{"since_ms": {fmt.Sprint(since.UnixMilli())}}
	if !until.IsZero() {
		query.Set("until_ms", fmt.Sprint(until.UnixMilli()))
	}
	if step > 0 {
		query.Set("step_ms", fmt.Sprint(step.Milliseconds()))
	}
	return query.Encode()
}
