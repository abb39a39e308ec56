// The Go SDK against a real msbd and real sandboxes (needs root and MSB_BIN_DIR), and its types
// against the API document. Run from a scratch module that requires the SDK through a replace
// (scripts/test-sdks), or from the SDK's own module.
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	msb "github.com/msb-sandbox/msb-go"
)

const mib = 1 << 20

func repo(t *testing.T) string {
	if dir := os.Getenv("MSB_REPO"); dir != "" {
		return dir
	}
	t.Skip("MSB_REPO is not set")
	return ""
}

func document(t *testing.T) map[string]any {
	data, err := os.ReadFile(filepath.Join(repo(t), "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func schema(doc map[string]any, name string) map[string]any {
	return doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
}

func schemaFields(s map[string]any) []string {
	seen := map[string]bool{}
	variants := []any{s}
	if oneOf, ok := s["oneOf"].([]any); ok {
		variants = oneOf
	}
	for _, v := range variants {
		for field := range v.(map[string]any)["properties"].(map[string]any) {
			seen[field] = true
		}
	}
	out := []string{}
	for field := range seen {
		out = append(out, field)
	}
	sort.Strings(out)
	return out
}

var types = map[string]any{
	"SandboxInfo": msb.SandboxInfo{}, "RunInfo": msb.RunInfo{}, "SandboxConfig": msb.SandboxConfig{},
	"MetricsReport": msb.MetricsReport{}, "CapacityReport": msb.CapacityReport{},
	"SandboxHeadroom": msb.SandboxHeadroom{}, "WaitResponse": msb.WaitResponse{},
	"HistoryResponse": msb.HistoryResponse{}, "ErrorBody": msb.ErrorBody{}, "ExecResponse": msb.ExecResponse{},
	"ExecRequest": msb.ExecRequest{}, "DrainRequest": msb.DrainRequest{}, "StopRequest": msb.StopRequest{},
	"KillRequest": msb.KillRequest{}, "RootfsSource": msb.RootfsSource{},
}

func jsonFields(value any) []string {
	out := []string{}
	kind := reflect.TypeOf(value)
	for i := 0; i < kind.NumField(); i++ {
		out = append(out, strings.Split(kind.Field(i).Tag.Get("json"), ",")[0])
	}
	sort.Strings(out)
	return out
}

func TestGeneratedTypesAreUpToDate(t *testing.T) {
	check := exec.Command("python3", filepath.Join(repo(t), "sdks", "codegen.py"), "--check")
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

func TestEveryTypeCoversEveryFieldOfItsSchema(t *testing.T) {
	doc := document(t)
	for name, value := range types {
		if got, want := jsonFields(value), schemaFields(schema(doc, name)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fields %v, the document's %v", name, got, want)
		}
		if !reflect.DeepEqual(msb.Fields[name], schemaFieldsInOrder(schema(doc, name))) {
			t.Errorf("%s: Fields is stale", name)
		}
	}
}

func schemaFieldsInOrder(s map[string]any) []string { return schemaFields(s) }

func TestFixturesParseAndWriteBackUnchanged(t *testing.T) {
	dir := filepath.Join(repo(t), "sdks", "fixtures")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		data, _ := os.ReadFile(file)
		var examples map[string]json.RawMessage
		if err := json.Unmarshal(data, &examples); err != nil {
			t.Fatal(err)
		}
		for which, example := range examples {
			value := reflect.New(reflect.TypeOf(types[name]))
			decoder := json.NewDecoder(strings.NewReader(string(example)))
			decoder.DisallowUnknownFields()
			if err := decoder.Decode(value.Interface()); err != nil {
				t.Fatalf("%s %s: %v", name, which, err)
			}
			back, _ := json.Marshal(value.Interface())
			var want, got any
			_ = json.Unmarshal(example, &want)
			_ = json.Unmarshal(back, &got)
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%s %s: written back as %s", name, which, back)
			}
		}
	}
}

// --- against a real msbd --------------------------------------------------------------------

func binDir() string {
	if dir := os.Getenv("MSB_BIN_DIR"); dir != "" {
		return dir
	}
	return "/var/tmp/msb-target/msb-bin"
}

func newClient(t *testing.T) (*msb.Client, string) {
	if os.Geteuid() != 0 {
		t.Skip("sandboxes need root")
	}
	if _, err := os.Stat(filepath.Join(binDir(), "msbd")); err != nil {
		t.Skip("no msbd in MSB_BIN_DIR")
	}
	home, err := os.MkdirTemp("/tmp", "msb-go-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o700)
	os.Setenv("MSB_BIN_DIR", binDir())
	if os.Getenv("MSB_AGENTD") == "" {
		os.Setenv("MSB_AGENTD", filepath.Join(binDir(), "msb-agentd"))
	}
	os.Setenv("MSB_PROMETHEUS_ADDR", "127.0.0.1:0")
	client := msb.NewClient(msb.WithHome(home))
	t.Cleanup(func() {
		ctx := context.Background()
		if sandboxes, err := client.List(ctx, true); err == nil {
			for _, s := range sandboxes {
				_ = s.Remove(ctx, true)
			}
		}
		cli(t, home, "server", "stop")
		os.RemoveAll(home)
	})
	return client, home
}

func cli(t *testing.T, home string, args ...string) string {
	cmd := exec.Command(filepath.Join(binDir(), "msb"), args...)
	cmd.Env = append(os.Environ(), "MSB_HOME="+home)
	out, err := cmd.Output()
	if err != nil && args[0] != "server" {
		t.Fatalf("msb %v: %v", args, err)
	}
	return string(out)
}

func eventually(t *testing.T, what string, check func() bool) {
	deadline := time.Now().Add(20 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestAgainstARealDaemon(t *testing.T) {
	client, home := newClient(t)
	ctx := context.Background()

	t.Run("builder options land in inspect", func(t *testing.T) {
		data, scratch := t.TempDir(), t.TempDir()
		sandbox := must[*msb.Sandbox](t)(client.Sandbox("go-options").CPUs(0.5).MemoryMiB(256).
			Env("GREETING", "hi").Workdir("/tmp").Mount(data, "/data", true).
			MountWithQuota(scratch, "/scratch", 64).Label("team", "sdk").
			IdleTimeout(10 * time.Minute).MaxDuration(15 * time.Minute).MetricsInterval(500 * time.Millisecond).Start(ctx))
		info := must[*msb.SandboxInfo](t)(sandbox.Inspect(ctx))
		c := info.Config
		quota := int64(64)
		if *c.CPUs != 0.5 || *c.MemoryMib != 256 || *c.Workdir != "/tmp" || *c.IdleTimeoutSecs != 600 ||
			*c.MaxDurationSecs != 900 || *c.MetricsIntervalMs != 500 || c.Labels["team"] != "sdk" ||
			!reflect.DeepEqual(c.Env, [][2]string{{"GREETING", "hi"}}) || c.Ephemeral ||
			!reflect.DeepEqual(c.Volumes, []msb.VolumeMount{
				{Host: &data, Guest: "/data", Readonly: true},
				{Host: &scratch, Guest: "/scratch", QuotaMib: &quota},
			}) {
			t.Fatalf("config: %+v", c)
		}
		result := must[*msb.ExecResult](t)(sandbox.Exec(ctx, []string{"sh", "-c", "echo $GREETING; pwd"}, nil))
		if string(result.Stdout) != "hi\n/tmp\n" {
			t.Fatalf("%q", result.Stdout)
		}
		must[struct{}](t)(struct{}{}, sandbox.Remove(ctx, true))
		if _, err := client.Get(ctx, "go-options"); !errors.Is(err, msb.ErrNotFound) {
			t.Fatalf("get after remove: %v", err)
		}
	})

	t.Run("published port, egress rules and no network", func(t *testing.T) {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		spec := fmt.Sprintf("%d:8080", port)
		web := must[*msb.Sandbox](t)(client.Sandbox("go-web").
			Command("sh", "-c", "while true; do echo go-published | nc -l -p 8080; done").
			Publish(spec).NetRule("deny@10.0.0.0/8").NetRingFrames(256).RootDiskMib(256).Start(ctx))
		c := must[*msb.SandboxInfo](t)(web.Inspect(ctx)).Config
		if c.NetRingFrames == nil || *c.NetRingFrames != 256 || c.RootDiskMib == nil || *c.RootDiskMib != 256 {
			t.Fatalf("ring and root disk: %+v", c)
		}
		if !reflect.DeepEqual(c.PublishedPorts, []string{spec}) || !reflect.DeepEqual(c.NetRules, []string{"deny@10.0.0.0/8"}) {
			t.Fatalf("config: %+v", c)
		}
		eventually(t, "the published port to answer", func() bool {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 3*time.Second)
			if err != nil {
				return false
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			answer, _ := io.ReadAll(conn)
			return strings.Contains(string(answer), "go-published")
		})
		must[struct{}](t)(struct{}{}, web.Stop(ctx, time.Second))
		offline := must[*msb.Sandbox](t)(client.Sandbox("go-offline").NoNetwork().Start(ctx))
		links := must[*msb.ExecResult](t)(offline.Exec(ctx, []string{"ls", "/sys/class/net"}, nil))
		if fields := strings.Fields(string(links.Stdout)); !reflect.DeepEqual(fields, []string{"lo"}) {
			t.Fatalf("links: %q", fields)
		}
		must[struct{}](t)(struct{}{}, offline.Stop(ctx, time.Second))
		if _, err := client.Sandbox("go-badport").Publish("99999:80").Create(ctx); !errors.Is(err, msb.ErrInvalidArgument) || !strings.Contains(err.Error(), "published") {
			t.Fatalf("%v", err)
		}
		if _, err := client.Get(ctx, "go-badport"); !errors.Is(err, msb.ErrNotFound) {
			t.Fatalf("get: %v", err)
		}
	})

	t.Run("unnamed sandboxes are ephemeral; run returns the exit code", func(t *testing.T) {
		builder := client.Sandbox("").Command("sh", "-c", "exit 4")
		if !builder.Config().Ephemeral {
			t.Fatal("not ephemeral")
		}
		_, result, err := builder.Run(ctx)
		if err != nil || *result.ExitCode != 4 {
			t.Fatalf("%v %+v", err, result)
		}
	})

	t.Run("exec output and exit codes", func(t *testing.T) {
		sandbox := must[*msb.Sandbox](t)(client.Sandbox("go-exec").Start(ctx))
		result := must[*msb.ExecResult](t)(sandbox.Exec(ctx, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, nil))
		if string(result.Stdout) != "out\n" || string(result.Stderr) != "err\n" || result.ExitCode != 3 {
			t.Fatalf("%+v", result)
		}
		fed := must[*msb.ExecResult](t)(sandbox.Exec(ctx, []string{"cat"}, &msb.ExecOptions{Stdin: []byte{0, 1, 2}}))
		if !reflect.DeepEqual(fed.Stdout, []byte{0, 1, 2}) {
			t.Fatalf("%v", fed.Stdout)
		}
		slow := must[*msb.ExecResult](t)(sandbox.Exec(ctx, []string{"sleep", "30"}, &msb.ExecOptions{Timeout: 300 * time.Millisecond}))
		if !slow.TimedOut || slow.ExitCode != 137 {
			t.Fatalf("%+v", slow)
		}
		_, err := sandbox.Exec(ctx, []string{"no-such-command"}, nil)
		var failure *msb.Error
		if !errors.Is(err, msb.ErrStartFailed) || !errors.As(err, &failure) || *failure.ExitCode != 127 {
			t.Fatalf("%v", err)
		}
		if _, err := sandbox.Exec(ctx, []string{}, nil); !errors.Is(err, msb.ErrInvalidArgument) {
			t.Fatalf("%v", err)
		}
		cat := must[*msb.Process](t)(sandbox.ExecStream(ctx, []string{"cat"}, nil))
		if cat.Pid <= 1 {
			t.Fatalf("pid %d", cat.Pid)
		}
		cat.Write([]byte("ping\n"))
		chunk := must[*msb.OutputChunk](t)(cat.Recv())
		if chunk.Stream != msb.OutputStreamStdout || string(chunk.Data) != "ping\n" {
			t.Fatalf("%+v", chunk)
		}
		cat.CloseStdin()
		if ended := must[*msb.ExecResult](t)(cat.Wait()); ended.ExitCode != 0 {
			t.Fatalf("%+v", ended)
		}
		both := must[*msb.Process](t)(sandbox.ExecStream(ctx, []string{"sh", "-c", "echo a; echo b >&2; exit 5"}, &msb.StreamOptions{NoStdin: true}))
		ended := must[*msb.ExecResult](t)(both.Wait())
		if string(ended.Stdout) != "a\n" || string(ended.Stderr) != "b\n" || ended.ExitCode != 5 {
			t.Fatalf("%+v", ended)
		}
		if _, err := sandbox.ExecStream(ctx, []string{"no-such-command"}, nil); !errors.Is(err, msb.ErrStartFailed) {
			t.Fatalf("%v", err)
		}
		sandbox.Remove(ctx, true)
	})

	t.Run("stop kill drain wait on handles from list", func(t *testing.T) {
		for _, name := range []string{"go-stop", "go-kill", "go-drain", "go-wait"} {
			must[*msb.Sandbox](t)(client.Sandbox(name).Start(ctx))
		}
		handles := map[string]*msb.Sandbox{}
		for _, s := range must[[]*msb.Sandbox](t)(client.List(ctx, false)) {
			handles[s.Name] = s
		}
		if err := handles["go-stop"].Stop(ctx, time.Second); err != nil || handles["go-stop"].LastInfo.Status != msb.SandboxStatusStopped {
			t.Fatalf("stop: %v %s", err, handles["go-stop"].LastInfo.Status)
		}
		if err := handles["go-kill"].Kill(ctx, 9); err != nil {
			t.Fatal(err)
		}
		if s := must[msb.SandboxStatus](t)(handles["go-kill"].Status(ctx)); s != msb.SandboxStatusStopped {
			t.Fatal(s)
		}
		drained := handles["go-drain"]
		process := must[*msb.Process](t)(drained.ExecStream(ctx, []string{"sh", "-c", "sleep 2; echo done"}, &msb.StreamOptions{NoStdin: true}))
		drainDone := make(chan error, 1)
		go func() { drainDone <- drained.Drain(ctx, 0, 0) }()
		eventually(t, "Draining", func() bool {
			s, _ := drained.Status(ctx)
			return s == msb.SandboxStatusDraining
		})
		if _, err := drained.Exec(ctx, []string{"true"}, nil); !errors.Is(err, msb.ErrConflict) || !strings.Contains(err.Error(), "draining") {
			t.Fatalf("exec while draining: %v", err)
		}
		if ended := must[*msb.ExecResult](t)(process.Wait()); string(ended.Stdout) != "done\n" {
			t.Fatalf("%+v", ended)
		}
		if err := <-drainDone; err != nil {
			t.Fatal(err)
		}
		runs := must[*msb.SandboxInfo](t)(drained.Inspect(ctx)).Runs
		if reason := runs[len(runs)-1].TerminationReason; reason == nil || *reason != msb.TerminationReasonDrainRequested {
			t.Fatalf("reason %v", reason)
		}
		waited := make(chan *msb.WaitResponse, 1)
		go func() {
			result, _ := handles["go-wait"].Wait(ctx)
			waited <- result
		}()
		time.Sleep(500 * time.Millisecond)
		handles["go-wait"].Kill(ctx, 15)
		if result := <-waited; result == nil || *result.ExitCode != 128+15 {
			t.Fatalf("%+v", result)
		}
	})

	t.Run("a dead supervisor does not hang wait", func(t *testing.T) {
		sandbox := must[*msb.Sandbox](t)(client.Sandbox("go-crash").Start(ctx))
		runs := must[*msb.SandboxInfo](t)(sandbox.Inspect(ctx)).Runs
		supervisor := int(*runs[len(runs)-1].SupervisorPID)
		waited := make(chan *msb.WaitResponse, 1)
		go func() {
			result, _ := sandbox.Wait(ctx)
			waited <- result
		}()
		time.Sleep(300 * time.Millisecond)
		syscall.Kill(supervisor, syscall.SIGKILL)
		select {
		case result := <-waited:
			if result == nil || (result.Status != msb.SandboxStatusCrashed && result.Status != msb.SandboxStatusStopped) {
				t.Fatalf("%+v", result)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("wait hung")
		}
		sandbox.Remove(ctx, true)
	})

	t.Run("metrics fields, stream, history and capacity", func(t *testing.T) {
		sandbox := must[*msb.Sandbox](t)(client.Sandbox("go-metrics").MetricsInterval(200 * time.Millisecond).Start(ctx))
		var report *msb.MetricsReport
		eventually(t, "a first sample", func() bool {
			var err error
			report, err = sandbox.Metrics(ctx)
			return err == nil
		})
		raw, _ := json.Marshal(report)
		var fields map[string]any
		json.Unmarshal(raw, &fields)
		props := schema(document(t), "MetricsReport")["properties"].(map[string]any)
		for field, prop := range props {
			value, present := fields[field]
			if !present {
				t.Errorf("%s missing", field)
				continue
			}
			types := prop.(map[string]any)["type"]
			if value == nil && !strings.Contains(jsonString(types), "null") {
				t.Errorf("%s is null", field)
			}
		}
		if *report.MemoryLimitBytes != 512*mib {
			t.Errorf("memory limit %d", *report.MemoryLimitBytes)
		}
		stream := must[*msb.MetricsStream](t)(sandbox.MetricsStream(ctx, 200*time.Millisecond))
		for i := 0; i < 2; i++ {
			if line := must[*msb.MetricsReport](t)(stream.Recv()); line.Name != "go-metrics" {
				t.Fatal(line.Name)
			}
		}
		stream.Close()
		if all := must[map[string]msb.MetricsReport](t)(client.AllSandboxMetrics(ctx, false)); all["go-metrics"].Name == "" {
			t.Fatal("go-metrics missing from all sandboxes' metrics")
		}
		off := must[*msb.Sandbox](t)(client.Sandbox("go-nometrics").MetricsInterval(0).Start(ctx))
		if _, err := off.Metrics(ctx); !errors.Is(err, msb.ErrMetricsDisabled) {
			t.Fatalf("%v", err)
		}
		off.Remove(ctx, true)

		// A window that ended seconds ago: every sample in it is stored by now.
		since := time.Unix(time.Now().Unix()-60, 0)
		time.Sleep(3 * time.Second)
		until := time.Unix(time.Now().Unix()-2, 0)
		// A sample of the window's last seconds may still be on its way to the store on a busy
		// host (the writer commits in batches): the two must agree once it is stored.
		var history *msb.HistoryResponse
		var points []map[string]any
		for attempt := 0; attempt < 10; attempt++ {
			history = must[*msb.HistoryResponse](t)(sandbox.MetricsHistory(ctx, since, until, time.Second))
			if len(history.Points) == 0 {
				t.Fatal("no points")
			}
			printed := cli(t, home, "metrics", "go-metrics", "--since", since.UTC().Format(time.RFC3339),
				"--until", until.UTC().Format(time.RFC3339), "--step", "1s", "--format", "json")
			points = nil
			if json.Unmarshal([]byte(printed), &points) != nil {
				points = nil
				for _, line := range strings.Split(strings.TrimSpace(printed), "\n") {
					var point map[string]any
					json.Unmarshal([]byte(line), &point)
					points = append(points, point)
				}
			}
			if samePoints(points, history.Points) {
				break
			}
			time.Sleep(time.Second)
		}
		if !samePoints(points, history.Points) {
			t.Fatalf("CLI %v\nSDK %v", points, history.Points)
		}
		sandbox.Remove(ctx, true)

		before := must[*msb.CapacityReport](t)(client.Capacity(ctx))
		sized := must[*msb.Sandbox](t)(client.Sandbox("go-capacity").MemoryMiB(256).Start(ctx))
		after := must[*msb.CapacityReport](t)(client.Capacity(ctx))
		if after.MemoryCommittedBytes-before.MemoryCommittedBytes != 256*mib {
			t.Fatalf("%d -> %d", before.MemoryCommittedBytes, after.MemoryCommittedBytes)
		}
		// The headroom is measured: it appears with the sandbox's first sample.
		eventually(t, "a first sample", func() bool { _, err := sized.Metrics(ctx); return err == nil })
		after = must[*msb.CapacityReport](t)(client.Capacity(ctx))
		found := false
		for _, h := range after.Sandboxes {
			found = found || (h.Name == "go-capacity" && *h.MemoryLimitBytes == 256*mib)
		}
		if !found {
			t.Fatal("no headroom for go-capacity")
		}
		sized.Remove(ctx, true)
	})

	t.Run("errors are typed and carry the message", func(t *testing.T) {
		must[*msb.Sandbox](t)(client.Sandbox("go-taken").Create(ctx))
		if _, err := client.Sandbox("go-taken").Create(ctx); !errors.Is(err, msb.ErrAlreadyExists) || !strings.Contains(err.Error(), "go-taken") {
			t.Fatalf("%v", err)
		}
		if _, err := client.Sandbox("go-bad").MemoryMiB(1).Create(ctx); !errors.Is(err, msb.ErrInvalidArgument) || !strings.Contains(err.Error(), "memory") {
			t.Fatalf("%v", err)
		}
		client.Remove(ctx, "go-taken", false)
		if _, err := msb.NewClient(msb.WithSocket(filepath.Join(home, "none.sock"))).List(ctx, true); !errors.Is(err, msb.ErrDaemonUnreachable) {
			t.Fatalf("%v", err)
		}
	})
}

// samePoints: equal point lists, numbers equal to 1e-9 relative (msbd's rates are float sums
// whose last bit can differ between two reads of the same samples).
func samePoints(a, b []map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for key, u := range a[i] {
			v, ok := b[i][key]
			if !ok {
				return false
			}
			x, xNum := u.(float64)
			y, yNum := v.(float64)
			if xNum && yNum {
				if math.Abs(x-y) > 1e-9*math.Max(math.Max(math.Abs(x), math.Abs(y)), 1) {
					return false
				}
			} else if !reflect.DeepEqual(u, v) {
				return false
			}
		}
	}
	return true
}

func jsonString(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}
