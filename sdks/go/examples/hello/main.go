// Starts a sandbox, runs code in it and prints its metrics.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	msb "github.com/msb-sandbox/msb-go"
)

func main() {
	ctx := context.Background()
	client := msb.NewClient()
	sandbox, err := client.Sandbox("").MemoryMiB(256).Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sandbox.Stop(ctx, 10*time.Second)
	out, err := sandbox.Exec(ctx, []string{"sh", "-c", "echo hello from $(hostname); seq 1 100000 | wc -l"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out.Stdout))
	for i := 0; i < 50; i++ {
		report, err := sandbox.Metrics(ctx)
		if errors.Is(err, msb.ErrMetricsUnavailable) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		encoder := json.NewEncoder(os.Stdout)
		encoder.SetIndent("", "  ")
		encoder.Encode(report)
		return
	}
}
