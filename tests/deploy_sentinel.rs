//! The Azure content under `deploy/sentinel/` holds to the relay: the ARM template creates
//! what the Logs Ingestion API needs (the table, a DCR with the stream, its data flow to the
//! table, the Monitoring Metrics Publisher role for the relay's app, the `ZoomLogs`
//! function), its stream and table declare exactly the columns the relay writes
//! (`ship::sentinel::record::COLUMNS`), its stream is the default `SENTINEL_STREAM`, and the
//! function in the template is `ZoomLogs.kql` as committed. A column added to the row
//! without the template (or the other way round) fails here.

use qss_relay::config::settings::SENTINEL_STREAM;
use qss_relay::ship::sentinel::record::COLUMNS;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/sentinel");

fn template() -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/azuredeploy.json")).unwrap();
    serde_json::from_str(&text).expect("azuredeploy.json is JSON")
}

fn resource<'a>(t: &'a Value, kind: &str) -> &'a Value {
    let found: Vec<&Value> = t["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["type"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in the template");
    found[0]
}

fn columns(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("a column list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn relay_columns() -> Vec<(String, String)> {
    COLUMNS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[test]
fn the_template_declares_the_relays_columns_on_the_default_stream() {
    let t = template();
    assert!(t["$schema"]
        .as_str()
        .unwrap()
        .contains("deploymentTemplate.json"));
    for p in ["workspaceName", "location", "principalId"] {
        assert!(t["parameters"].get(p).is_some(), "parameter {p}");
    }
    let stream = SENTINEL_STREAM.default.unwrap();
    assert_eq!(t["variables"]["streamName"], stream);

    let table = resource(&t, "Microsoft.OperationalInsights/workspaces/tables");
    assert_eq!(
        t["variables"]["tableName"],
        stream.trim_start_matches("Custom-")
    );
    assert_eq!(
        columns(&table["properties"]["schema"]["columns"]),
        relay_columns(),
        "the table's columns are not the row's"
    );

    let dcr = resource(&t, "Microsoft.Insights/dataCollectionRules");
    let p = &dcr["properties"];
    let declared = p["streamDeclarations"]
        .as_object()
        .expect("streamDeclarations");
    assert_eq!(declared.keys().collect::<Vec<_>>(), vec![stream]);
    assert_eq!(
        columns(&declared[stream]["columns"]),
        relay_columns(),
        "the stream's columns are not the row's"
    );
    // Kind Direct: the DCR has its own ingestion endpoint (no DCE to create).
    assert_eq!(dcr["kind"], "Direct");
    let flows = p["dataFlows"].as_array().unwrap();
    assert_eq!(flows.len(), 1);
    let flow = &flows[0];
    assert_eq!(flow["streams"], serde_json::json!([stream]));
    assert_eq!(flow["outputStream"], stream);
    assert!(flow["transformKql"].as_str().is_some_and(|k| !k.is_empty()));
    let destination = flow["destinations"][0].as_str().unwrap();
    assert!(
        p["destinations"]["logAnalytics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == destination),
        "the data flow goes to a destination the DCR does not declare"
    );

    let role = resource(&t, "Microsoft.Authorization/roleAssignments");
    // The built-in role id of Monitoring Metrics Publisher.
    assert!(t["variables"]["monitoringMetricsPublisher"]
        .as_str()
        .unwrap()
        .contains("3913510d-42f4-4e42-8a64-420c390055eb"));
    assert_eq!(
        role["properties"]["roleDefinitionId"],
        "[variables('monitoringMetricsPublisher')]"
    );
    assert!(role["scope"]
        .as_str()
        .unwrap()
        .contains("Microsoft.Insights/dataCollectionRules"));
    assert_eq!(
        role["properties"]["principalId"],
        "[parameters('principalId')]"
    );

    // What the relay's settings need comes out of the deployment.
    for out in ["SENTINEL_ENDPOINT", "SENTINEL_DCR_ID", "SENTINEL_STREAM"] {
        assert!(t["outputs"].get(out).is_some(), "output {out}");
    }
}

#[test]
fn the_zoomlogs_function_is_the_committed_kql_and_projects_the_unified_schema() {
    let t = template();
    let function = resource(&t, "Microsoft.OperationalInsights/workspaces/savedSearches");
    assert_eq!(function["properties"]["functionAlias"], "ZoomLogs");
    let kql = std::fs::read_to_string(format!("{DIR}/ZoomLogs.kql")).unwrap();
    assert_eq!(
        function["properties"]["query"].as_str().unwrap(),
        kql,
        "the template's ZoomLogs differs from ZoomLogs.kql: copy it over"
    );
    let project = kql
        .split("| project ")
        .nth(1)
        .expect("ZoomLogs ends with a project");
    let projected: Vec<&str> = project
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    for column in [
        "Event",
        "EventTime",
        "User",
        "UserId",
        "MeetingEvents",
        "WebinarEvents",
        "ChannelEvents",
        "ChatEvents",
        "UserEvents",
        "RecordingEvents",
        "RoomEvents",
    ] {
        assert!(
            projected.contains(&column),
            "ZoomLogs does not project {column}"
        );
    }
    assert!(kql.trim_start().lines().any(|l| l.trim() == "ZoomLogs_CL"));
}
