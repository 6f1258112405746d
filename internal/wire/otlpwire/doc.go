// Package otlpwire reads and writes OTLP trace requests in their protobuf wire form without
// building Go objects for them.
//
// Ariadne keeps spans in the form they arrive in: the write-ahead log stores requests, the head
// stores each span's message bytes, and only the block writer and the query API decode fully.
// Scanning the wire form directly is what lets ingest run without an allocation per span: the
// stock generated types would build a tree of a dozen heap objects for every span just so that
// validation could read five fields.
package otlpwire
