// The SDK's types against the API document: generated from it, up to date, covering every
// field, and the shared fixtures made of exactly those fields.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { FIELDS } from "msb-sdk";

const repo = process.env.MSB_REPO;
const document = JSON.parse(fs.readFileSync(path.join(repo, "docs/openapi.json"), "utf8"));
const schemas = document.components.schemas;

test("the generated types are up to date", () => {
  execFileSync("python3", [path.join(repo, "sdks/codegen.py"), "--check"], { stdio: "inherit" });
});

test("every type covers every field of its schema", () => {
  for (const [name, fields] of Object.entries(FIELDS)) {
    const schema = schemas[name];
    const expected = schema.oneOf
      ? new Set(schema.oneOf.flatMap((v) => Object.keys(v.properties ?? {})))
      : new Set(Object.keys(schema.properties));
    assert.deepEqual(new Set(fields), expected, name);
  }
});

test("the fixtures hold exactly the fields of their types", () => {
  const dir = path.join(repo, "sdks/fixtures");
  for (const file of fs.readdirSync(dir)) {
    const name = path.basename(file, ".json");
    for (const example of Object.values(JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")))) {
      assert.deepEqual(new Set(Object.keys(example)), new Set(FIELDS[name]), name);
    }
  }
});
