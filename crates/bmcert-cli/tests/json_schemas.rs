//! The `--json` output of every command against its schema in docs/cli-json.md: the schemas
//! are read from the page, the documents come from the built binary. The ACME commands run
//! against the pebble of `scripts/test-all` (skipped without it, unless peers are required).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::BTreeMap;

use bmcert_test::peers::{Pebble, PebbleInstance};
use common::{repo, Setup};
use serde_json::Value;

/// The schemas of docs/cli-json.md: `refused` and `report` (the two before the first
/// command), then one per `## \`bmcert COMMAND\`` heading; a block after a
/// `<!-- schema: NAME -->` line is the shared schema `NAME` (`$ref` to it).
fn schemas() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(repo().join("docs/cli-json.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut heading: Option<String> = None;
    let mut preamble = ["refused", "report"].into_iter();
    let mut block: Option<String> = None;
    for line in text.lines() {
        if let Some(body) = &mut block {
            if line.trim_end() == "```" {
                let schema: Value = serde_json::from_str(body).unwrap_or_else(|e| {
                    panic!("docs/cli-json.md: a schema is not JSON: {e}\n{body}")
                });
                let name = match heading.take() {
                    Some(h) => h,
                    None => preamble
                        .next()
                        .expect("docs/cli-json.md: more than two schemas before the first command")
                        .to_owned(),
                };
                assert!(
                    out.insert(name.clone(), schema).is_none(),
                    "two schemas for {name}"
                );
                block = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(cmd) = line
            .strip_prefix("## `bmcert ")
            .and_then(|l| l.strip_suffix('`'))
        {
            heading = Some(cmd.to_owned());
        } else if let Some(name) = line
            .strip_prefix("<!-- schema: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            heading = Some(name.to_owned());
        } else if line.trim_end() == "```json" {
            block = Some(String::new());
        }
    }
    out
}

/// Validates `value` against `schema` (the subset docs/cli-json.md uses); returns every
/// mismatch with its JSON path.
fn validate(
    schemas: &BTreeMap<String, Value>,
    schema: &Value,
    value: &Value,
    at: &str,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
        let target = schemas
            .get(name)
            .unwrap_or_else(|| panic!("no schema `{name}`"));
        return validate(schemas, target, value, at);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|o| validate(schemas, o, value, at).is_empty())
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: matches {matching} of the oneOf schemas, not 1: {value}"
            ));
        }
        return errors;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => panic!("bad type {other}"),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            errors.push(format!("{at}: a {actual}, expected {types:?}"));
            return errors;
        }
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for (i, v) in values.iter().enumerate() {
            errors.extend(validate(schemas, items, v, &format!("{at}[{i}]")));
        }
    }
    if let Value::Object(map) = value {
        let empty = serde_json::Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(key) {
                errors.push(format!("{at}: the required key `{key}` is missing"));
            }
        }
        for (key, v) in map {
            let path = format!("{at}.{key}");
            match (properties.get(key), schema.get("additionalProperties")) {
                (Some(s), _) => errors.extend(validate(schemas, s, v, &path)),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(s @ Value::Object(_))) => errors.extend(validate(schemas, s, v, &path)),
                (None, _) => errors.push(format!("{path}: not in the schema")),
            }
        }
    }
    errors
}

/// Runs `bmcert ARGS --json`, checks the exit status and validates the document against
/// the schema of `command`.
fn check_command(
    schemas: &BTreeMap<String, Value>,
    seen: &mut Vec<String>,
    setup: &Setup,
    command: &str,
    args: &[&str],
    exit: i32,
) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = setup.run(&all);
    assert_eq!(
        run.code,
        exit,
        "bmcert {}: {}",
        all.join(" "),
        run.context()
    );
    let doc = run.json();
    let schema = schemas
        .get(command)
        .unwrap_or_else(|| panic!("docs/cli-json.md has no schema for `bmcert {command}`"));
    let errors = validate(schemas, schema, &doc, "$");
    assert!(
        errors.is_empty(),
        "bmcert {}: the output does not match docs/cli-json.md:\n{}\n{doc:#}",
        all.join(" "),
        errors.join("\n")
    );
    seen.push(command.to_owned());
    doc
}

#[test]
fn the_validator_refuses_what_the_schemas_do_not_allow() {
    let schemas = schemas();
    let list = &schemas["list"];
    let row = serde_json::json!({
        "target": "system", "source": "files", "names": ["a"], "not_after": "2030-01-01T00:00:00Z",
        "days_left": 3, "version": 1, "fingerprint": "ab", "installed_at": "2030-01-01T00:00:00Z"
    });
    assert_eq!(
        validate(&schemas, list, &Value::Array(vec![row.clone()]), "$"),
        Vec::<String>::new()
    );
    let mut extra = row.clone();
    extra["surprise"] = Value::Bool(true);
    let mut missing = row.clone();
    missing.as_object_mut().unwrap().remove("version");
    let mut wrong = row;
    wrong["days_left"] = Value::String("3".into());
    for bad in [extra, missing, wrong] {
        assert!(
            !validate(&schemas, list, &Value::Array(vec![bad.clone()]), "$").is_empty(),
            "{bad}"
        );
    }
    // A refusal is not a success of `disable`, and a success is not a refusal.
    let refused = serde_json::json!({"done": false, "refused": "no"});
    assert!(validate(&schemas, &schemas["disable"], &refused, "$").is_empty());
    assert!(!validate(
        &schemas,
        &schemas["refused"],
        &serde_json::json!({"done": true, "refused": "x"}),
        "$"
    )
    .is_empty());
}

#[test]
fn every_command_output_matches_its_documented_schema() {
    let schemas = schemas();
    let s = Setup::new();
    let mut seen = Vec::new();
    let seen = &mut seen;
    let store = ["--store", "store", "--topology", "topology.toml"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { [&store[..], extra].concat() };

    let files = [
        "--cert",
        "system-cert.pem",
        "--key",
        "system-key.pem",
        "--ca",
        "system-ca.pem",
    ];
    let check_ok = [&["check", "--url", "mail.example.test"][..], &files].concat();
    let doc = check_command(&schemas, seen, &s, "check", &check_ok, 0);
    assert_eq!(doc["valid"], true);
    let check_refused = [&["check", "--url", "other.test"][..], &files].concat();
    let doc = check_command(&schemas, seen, &s, "check", &check_refused, 1);
    assert_eq!(doc["problems"][0]["code"], "name_mismatch");

    // p12: made with openssl from the system bundle.
    let p12 = s.path("b.p12");
    bmcert_test::fixtures::openssl(
        s.dir.path(),
        &[
            "pkcs12",
            "-export",
            "-in",
            "system-cert.pem",
            "-inkey",
            "system-key.pem",
            "-certfile",
            "system-ca.pem",
            "-passout",
            "pass:pw",
            "-out",
            p12.to_str().unwrap(),
        ],
    );
    std::fs::write(s.path("pw"), "pw\n").unwrap();
    std::fs::write(s.path("wrong"), "nope\n").unwrap();
    let doc = check_command(
        &schemas,
        seen,
        &s,
        "p12",
        &[
            "p12",
            "--p12",
            "b.p12",
            "--password-file",
            "pw",
            "--out-dir",
            "out",
        ],
        0,
    );
    assert_eq!(doc["files"].as_array().unwrap().len(), 3);
    check_command(
        &schemas,
        seen,
        &s,
        "p12",
        &[
            "p12",
            "--p12",
            "b.p12",
            "--password-file",
            "wrong",
            "--out-dir",
            "out2",
        ],
        1,
    );

    let install = |target: &'static str, name: &str, exit: i32, seen: &mut Vec<String>| {
        let (c, k, a) = match name {
            "system" => ("system-cert.pem", "system-key.pem", "system-ca.pem"),
            _ => ("acme-cert.pem", "acme-key.pem", "acme-ca.pem"),
        };
        check_command(
            &schemas,
            seen,
            &s,
            "install",
            &with(&[
                "install", "--target", target, "--cert", c, "--key", k, "--ca", a,
            ]),
            exit,
        )
    };
    let doc = install("system", "system", 0, seen);
    assert_eq!(
        (doc["installed"].clone(), doc["version"].clone()),
        (Value::Bool(true), Value::from(1))
    );
    let doc = install("domain:acme.test", "system", 1, seen);
    assert_eq!(
        (doc["installed"].clone(), doc["version"].clone()),
        (Value::Bool(false), Value::Null)
    );
    install("domain:acme.test", "acme", 0, seen);
    install("system", "system", 0, seen);

    // `init` on a store of its own: it makes the bootstrap certificate once.
    let init = [
        "--store",
        "init-store",
        "--topology",
        "topology.toml",
        "--json",
        "init",
    ];
    let doc = check_command(&schemas, seen, &s, "init", &init, 0);
    assert_eq!(doc["bootstrapped"], true, "{doc}");
    let doc = check_command(&schemas, seen, &s, "init", &init, 0);
    assert_eq!(doc["bootstrapped"], false, "{doc}");

    let doc = check_command(&schemas, seen, &s, "list", &with(&["list"]), 0);
    assert_eq!(doc.as_array().unwrap().len(), 2);
    let doc = check_command(&schemas, seen, &s, "status", &with(&["status"]), 0);
    assert_eq!(doc.as_array().unwrap().len(), 2);
    let doc = check_command(
        &schemas,
        seen,
        &s,
        "rollback",
        &with(&["rollback", "--target", "system"]),
        0,
    );
    assert_eq!(doc["version"], 1);
    check_command(
        &schemas,
        seen,
        &s,
        "rollback",
        &with(&["rollback", "--target", "domain:acme.test"]),
        1,
    );
    let doc = check_command(
        &schemas,
        seen,
        &s,
        "export",
        &with(&["export", "--target", "system", "--out-dir", "backup"]),
        0,
    );
    assert_eq!(doc["files"].as_array().unwrap().len(), 3);
    // The domain's state file damaged: `list` and `status` show it as `$damaged` next to
    // the system row and exit 1; its export is refused with `store_damaged`.
    std::fs::write(s.path("store/domains/acme.test/state.json"), b"").unwrap();
    for command in ["list", "status"] {
        let doc = check_command(&schemas, seen, &s, command, &with(&[command]), 1);
        let rows = doc.as_array().unwrap();
        assert_eq!(rows.len(), 2, "{doc}");
        let damaged = rows.iter().find(|r| r["code"] == "store_damaged");
        let damaged = damaged.unwrap_or_else(|| panic!("no damaged row: {doc}"));
        // The row matched the shared `$damaged` schema (the only `oneOf` option it fits).
        assert!(
            validate(&schemas, &schemas["damaged"], damaged, "$").is_empty(),
            "{damaged}"
        );
    }
    seen.push("damaged".to_owned());
    let doc = check_command(
        &schemas,
        seen,
        &s,
        "export",
        &with(&["export", "--target", "domain:acme.test", "--out-dir", "b1"]),
        1,
    );
    assert_eq!(doc["code"], "store_damaged", "{doc}");
    // `disable` repairs it (below).
    let doc = check_command(
        &schemas,
        seen,
        &s,
        "disable",
        &with(&["disable", "--target", "domain:acme.test"]),
        0,
    );
    assert_eq!(doc["disabled"], true);
    check_command(
        &schemas,
        seen,
        &s,
        "disable",
        &with(&["disable", "--target", "system"]),
        1,
    );
    check_command(
        &schemas,
        seen,
        &s,
        "export",
        &with(&["export", "--target", "domain:acme.test", "--out-dir", "b2"]),
        1,
    );
    // The domain has no certificate left: nothing to renew, refused before any CA is asked.
    check_command(
        &schemas,
        seen,
        &s,
        "renew",
        &with(&["renew", "--target", "domain:acme.test"]),
        1,
    );
    let doc = check_command(
        &schemas,
        seen,
        &s,
        "config",
        &with(&["config", "--etcd-user", "u:secret-pw"]),
        0,
    );
    assert_eq!(doc["store"]["from"], "--store");
    assert_eq!(doc["etcd.password"]["value"], "(set)");
    assert!(!doc.to_string().contains("secret-pw"));

    match Pebble::try_from_env(PebbleInstance::Main) {
        Ok(pebble) => {
            let ca = pebble.ca_path.to_str().unwrap().to_owned();
            let acme = |sub: &str| -> Vec<String> {
                [
                    "acme",
                    sub,
                    "--store",
                    "acme-store",
                    "--topology",
                    "topology.toml",
                    "--directory",
                    &pebble.directory,
                    "--directory-ca",
                    &ca,
                ]
                .map(str::to_owned)
                .to_vec()
            };
            let run = |args: &[String], command: &str, exit: i32, seen: &mut Vec<String>| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                check_command(&schemas, seen, &s, command, &args, exit)
            };
            let doc = run(&acme("terms"), "acme terms", 0, seen);
            assert!(doc["terms_url"].is_string());
            let mut issue = acme("issue");
            issue.extend(["--target".into(), "system".into()]);
            let doc = run(&issue, "acme issue", 1, seen);
            assert!(
                doc["refused"]
                    .as_str()
                    .unwrap()
                    .contains("bmcert acme accept"),
                "{doc}"
            );
            let doc = run(&acme("accept"), "acme accept", 0, seen);
            assert_eq!(doc["done"], true);
            // Pebble 2.4 advertises no profiles.
            let doc = run(&acme("profiles"), "acme profiles", 0, seen);
            assert_eq!(doc["profiles"], serde_json::json!({}));
            // Nothing installed for the system target: refused before anything is sent.
            let mut revoke = acme("revoke");
            revoke.extend(["--target", "system", "--reason", "superseded"].map(str::to_owned));
            let doc = run(&revoke, "acme revoke", 1, seen);
            assert!(
                doc["refused"]
                    .as_str()
                    .unwrap()
                    .contains("nothing is installed"),
                "{doc}"
            );
            // Registers the account (terms accepted above), then replaces its key.
            let doc = run(&acme("rollover"), "acme rollover", 0, seen);
            assert!(
                doc["account"].as_str().unwrap().starts_with("https://"),
                "{doc}"
            );
            let mut contact = acme("contact");
            contact.extend(["--email", "ops@example.org"].map(str::to_owned));
            let doc = run(&contact, "acme contact", 0, seen);
            assert_eq!(doc["contact"], "ops@example.org");
        }
        Err(missing) => {
            assert!(
                std::env::var_os(bmcert_test::peers::REQUIRE_PEERS).is_none(),
                "the ACME commands' JSON needs pebble: {missing}"
            );
            eprintln!("SKIPPED the acme commands: {missing}");
            seen.extend(
                [
                    "acme terms",
                    "acme accept",
                    "acme issue",
                    "acme profiles",
                    "acme revoke",
                    "acme rollover",
                    "acme contact",
                ]
                .map(str::to_owned),
            );
        }
    }
    // Every documented command was run (a schema nobody checks would drift).
    for name in schemas.keys().filter(|n| *n != "refused" && *n != "report") {
        assert!(
            seen.contains(name),
            "docs/cli-json.md documents `bmcert {name}`, which this test does not run"
        );
    }
}
