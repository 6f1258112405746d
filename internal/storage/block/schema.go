package block

import (
	"fmt"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding"
)

// colKind is how a column is typed and encoded. The encodings were chosen by measuring
// BenchmarkWrite's bytes per span (see the package comment).
type colKind int

const (
	kDelta  colKind = iota // INT64, DELTA_BINARY_PACKED: sorted or locally small numbers
	kInt32                 // INT32, PLAIN + zstd: enums and counts, nearly always one value
	kInt64                 // INT64, DELTA_BINARY_PACKED, optional: null unless the value is an int
	kDouble                // DOUBLE, PLAIN, optional: null unless the value is a double
	kBool                  // BOOLEAN
	kDict                  // BYTE_ARRAY, RLE_DICTIONARY: low-cardinality strings
	kBytes                 // BYTE_ARRAY, DELTA_LENGTH_BYTE_ARRAY + zstd: rare or opaque values
	kID16                  // FIXED_LEN_BYTE_ARRAY(16), PLAIN, uncompressed
	kRandom                // BYTE_ARRAY, DELTA_LENGTH_BYTE_ARRAY, uncompressed: random IDs
)

type colDef struct {
	name string
	kind colKind
}

// fileSchema is one Parquet file's columns. leaf maps the position in cols (the order the code
// uses) to the leaf index Parquet assigns, which sorts group fields by name.
type fileSchema struct {
	name   string
	cols   []colDef
	schema *parquet.Schema
	leaf   []int
}

var codec = &zstd.Codec{Level: zstd.SpeedFastest}

// codecRaw compresses the attributes' raw column, which from format 6 holds the identifiers
// that used to fill str's dictionary: at SpeedDefault it is 15% smaller on the guide's shapes
// (2.74 to 2.32 bytes a span) for no measurable write CPU, the column being a tenth of the
// bytes zstd sees.
var codecRaw = &zstd.Codec{Level: zstd.SpeedDefault}

func newFileSchema(name string, cols ...colDef) *fileSchema {
	g := parquet.Group{}
	for _, c := range cols {
		var n parquet.Node
		var enc encoding.Encoding
		switch c.kind {
		case kDelta:
			n, enc = parquet.Leaf(parquet.Int64Type), &parquet.DeltaBinaryPacked
		case kInt32:
			n, enc = parquet.Leaf(parquet.Int32Type), &parquet.DeltaBinaryPacked
		case kInt64:
			n, enc = parquet.Leaf(parquet.Int64Type), &parquet.DeltaBinaryPacked
		case kDouble:
			n = parquet.Leaf(parquet.DoubleType)
		case kBool:
			n = parquet.Leaf(parquet.BooleanType)
		case kDict:
			n, enc = parquet.String(), &parquet.RLEDictionary
		case kBytes:
			n, enc = parquet.Leaf(parquet.ByteArrayType), &parquet.DeltaLengthByteArray
		case kID16:
			n = parquet.Leaf(parquet.FixedLenByteArrayType(16))
		case kRandom:
			n, enc = parquet.Leaf(parquet.ByteArrayType), &parquet.DeltaLengthByteArray
		}
		if enc != nil {
			n = parquet.Encoded(n, enc)
		}
		// Typed value columns are sparse: a required column would carry a zero for every
		// attribute of another type and push megabytes of zeros through zstd.
		if c.kind == kDouble {
			n = parquet.Optional(n)
		}
		// Random IDs do not compress; running zstd over them only costs time.
		if c.kind != kID16 && c.kind != kRandom {
			if c.name == "raw" {
				n = parquet.Compressed(n, codecRaw)
			} else {
				n = parquet.Compressed(n, codec)
			}
		}
		g[c.name] = n
	}
	fs := &fileSchema{name: name, cols: cols, schema: parquet.NewSchema(name, g)}
	for _, c := range cols {
		lc, ok := fs.schema.Lookup(c.name)
		if !ok {
			panic(fmt.Sprintf("block: column %q missing from schema %s", c.name, name))
		}
		fs.leaf = append(fs.leaf, lc.ColumnIndex)
	}
	return fs
}

// Column positions, in the order each schema lists them below.
const (
	tID = iota
	tStart
	tDuration
	tRootService
	tRootName
	tSpanCount
	tErrorCount
	tSpanRow
	tAttrRow
	tEventRow
	tEventAttrRow
	tLinkRow
	tLinkAttrRow
	tSampleRatio
	tTruncated
)

const (
	sSpanID = iota
	sParent
	sParentID
	sStart
	sDuration
	sName
	sKind
	sStatus
	sStatusMsg
	sTraceState
	sFlags
	sDroppedAttrs
	sDroppedEvents
	sDroppedLinks
	sGroup
)

const (
	aOwner = iota
	aKey
	aType
	aStr
	aInt
	aDouble
	aBool
	aRaw
)

const (
	eSpan = iota
	eTime
	eName
	eDropped
)

const (
	lSpan = iota
	lTraceID
	lSpanID
	lTraceState
	lFlags
	lDropped
)

const (
	gResource = iota
	gResourceSchema
	gScope
	gScopeSchema
	gService
	gScopeName
	gPresence
)

var (
	tracesSchema = newFileSchema("traces",
		colDef{"trace_id", kID16},
		colDef{"start_unix_nano", kDelta},
		colDef{"duration_nano", kDelta},
		colDef{"root_service", kDict},
		colDef{"root_name", kDict},
		colDef{"span_count", kDelta},
		colDef{"error_count", kInt32},
		colDef{"span_row", kDelta},
		colDef{"attr_row", kDelta},
		colDef{"event_row", kDelta},
		colDef{"event_attr_row", kDelta},
		colDef{"link_row", kDelta},
		colDef{"link_attr_row", kDelta},
		colDef{"sample_ratio", kDouble},
		colDef{"truncated", kBool},
	)
	spansSchema = newFileSchema("spans",
		colDef{"span_id", kRandom},
		colDef{"parent", kInt32},
		colDef{"parent_id", kBytes},
		colDef{"start_offset", kDelta},
		colDef{"duration_nano", kDelta},
		colDef{"name", kDict},
		colDef{"kind", kInt32},
		colDef{"status", kDelta},
		colDef{"status_message", kBytes},
		colDef{"trace_state", kBytes},
		colDef{"flags", kInt32},
		colDef{"dropped_attributes", kInt32},
		colDef{"dropped_events", kInt32},
		colDef{"dropped_links", kInt32},
		colDef{"group", kInt32},
	)
	// attrsSchema serves span, event and link attributes; owner is the row of the span, event
	// or link in its own file.
	//
	// From format 6, string values of a span attribute key of high cardinality in the block
	// (more than MaxIndexValues distinct values, or nearly all distinct over its first
	// plainRows rows: request IDs, paths with IDs in them) go to the raw column instead of
	// str, from the value that decided it on, typed ValueStringPlainNew when no earlier row of
	// the row group has the value and ValueStringPlain otherwise. Without
	// that, the IDs fill str's dictionary after a few thousand spans and the rest of the row
	// group, "GET" included, is written plainly, which makes every reader of a value inflate
	// every page; with it, str is dictionary indexes throughout and compare counts values by
	// index alone. The new-value mark is what lets a counting reader tell an identifier without
	// reading its values: rows marked new are distinct values among themselves, so past a few
	// thousand on one side the key is an identifier for certain. (A numbering of every value,
	// which would let it count them too, cost 6 bytes a span on the guide's shapes.) The raw
	// column is the one that stays empty for strings otherwise, and a new column would cost
	// its page headers on every block, IDs or not.
	attrsSchema = newFileSchema("attrs",
		colDef{"owner", kDelta},
		colDef{"key", kDict},
		colDef{"type", kInt32},
		colDef{"str", kDict},
		colDef{"int", kInt64},
		colDef{"double", kDouble},
		colDef{"bool", kBool},
		colDef{"raw", kBytes},
	)
	eventsSchema = newFileSchema("events",
		colDef{"span", kDelta},
		colDef{"time_offset", kDelta},
		colDef{"name", kDict},
		colDef{"dropped_attributes", kInt32},
	)
	linksSchema = newFileSchema("links",
		colDef{"span", kDelta},
		colDef{"trace_id", kRandom},
		colDef{"span_id", kRandom},
		colDef{"trace_state", kDict},
		colDef{"flags", kInt32},
		colDef{"dropped_attributes", kInt32},
	)
	groupsSchema = newFileSchema("groups",
		colDef{"resource", kBytes},
		colDef{"resource_schema_url", kDict},
		colDef{"scope", kBytes},
		colDef{"scope_schema_url", kDict},
		colDef{"service_name", kDict},
		colDef{"scope_name", kDict},
		colDef{"presence", kInt32},
	)
)

// Object names inside a block folder.
const (
	fileTraces     = "traces.parquet"
	fileSpans      = "spans.parquet"
	fileAttrs      = "attrs.parquet"
	fileEvents     = "events.parquet"
	fileEventAttrs = "event_attrs.parquet"
	fileLinks      = "links.parquet"
	fileLinkAttrs  = "link_attrs.parquet"
	fileGroups     = "groups.parquet"
	fileBloom      = "bloom"
	fileMeta       = "meta.json"
)

// presence bits in the groups file: proto3 distinguishes an absent Resource or scope message
// from an empty one, and bytes columns cannot.
const (
	hasResource = 1 << iota
	hasScope
)
