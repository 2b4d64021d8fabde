// Parses and binds KQL with Microsoft's Kusto language service (@kusto/language-service-next)
// against the ZoomLogs_CL schema and the ZoomLogs function. Input on stdin:
// {"schema": "(col:type, ...)", "function": "<ZoomLogs body>", "queries": [{"name", "text"}]};
// output: {"diagnostics": {"<name>": ["<severity> <code>: <message> at <offset>", ...]},
// "columns": {"<name>": ["<result column>", ...]}}, diagnostics only for the queries that
// have any. Used by detections/build.py.
require("@kusto/language-service-next/bridge.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.js");

const K = Kusto.Language;
const S = K.Symbols;
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));

const table = new S.TableSymbol.$ctor7("ZoomLogs_CL", input.schema, null);
const zoomLogs = new S.FunctionSymbol.$ctor11("ZoomLogs", "{\n" + input.function + "\n}", []);
const globals = K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor("workspace", [table, zoomLogs]));

const report = { diagnostics: {}, columns: {} };
for (const q of input.queries) {
  const code = K.KustoCode.ParseAndAnalyze(q.text, globals);
  const diagnostics = code.GetDiagnostics();
  const found = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    found.push(`${d.Severity} ${d.Code}: ${d.Message} at ${d.Start}: ${JSON.stringify(q.text.substr(d.Start, 40))}`);
  }
  if (found.length) report.diagnostics[q.name] = found;
  const columns = [];
  const result = code.ResultType;
  if (result && result.Columns) {
    for (let i = 0; i < result.Columns.Count; i++) columns.push(result.Columns.getItem(i).Name);
  }
  report.columns[q.name] = columns;
}
process.stdout.write(JSON.stringify(report));
