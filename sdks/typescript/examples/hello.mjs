// Starts a sandbox, runs code in it and prints its metrics.
import { Client, MetricsUnavailableError } from "msb-sdk";

const client = new Client();
const sandbox = await client.sandbox().memoryMib(256).start();
try {
  const result = await sandbox.exec(["sh", "-c", "echo hello from $(hostname); seq 1 100000 | wc -l"]);
  process.stdout.write(result.stdout);
  for (let i = 0; i < 50; i++) {
    try {
      console.log(JSON.stringify(await sandbox.metrics(), null, 2));
      break;
    } catch (e) {
      if (!(e instanceof MetricsUnavailableError)) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
} finally {
  await sandbox.stop();
}
