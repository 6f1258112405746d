package otlpwire

// Batch is a request scanned once: every span's fields and the (resource, scope) group it came
// with, for every consumer of the request to read (validation, the head, span metrics, the
// service graph) instead of each scanning the wire bytes again. Its slices point into the
// scanned request, which must outlive every use of the batch. A Batch is reused across requests
// by calling Scan again; its memory is kept.
type Batch struct {
	Groups []Group
	Spans  []Span
	// ValidUTF8 is whether every string field of the request is valid UTF-8, as ValidUTF8
	// would say: the scan checks each field it passes, so no second walk is needed for it.
	ValidUTF8 bool
	// group is the index in Groups of each span's group.
	group []int32
	utf   utf8Check
}

// Scan resets b to the spans of an ExportTraceServiceRequest. On error b holds the spans before
// the damage; callers that must be all-or-nothing discard it.
func (b *Batch) Scan(req []byte) error {
	clear(b.Groups)
	clear(b.Spans)
	b.Groups, b.Spans, b.group = b.Groups[:0], b.Spans[:0], b.group[:0]
	var last *Group
	b.utf = newUTF8Check()
	defer func() { b.ValidUTF8 = b.utf.valid }()
	return scanRequest(req, &b.utf, func(g *Group, s *Span) error {
		// ScanRequest reuses g for every group: a group changes when any of its slices does.
		if last == nil || !sameGroup(last, g) {
			b.Groups = append(b.Groups, *g)
			last = &b.Groups[len(b.Groups)-1]
		}
		b.Spans = append(b.Spans, *s)
		b.group = append(b.group, int32(len(b.Groups)-1))
		return nil
	})
}

// Group returns the group of span i.
func (b *Batch) Group(i int) *Group { return &b.Groups[b.group[i]] }

// Len is the number of spans.
func (b *Batch) Len() int { return len(b.Spans) }

// Release drops the batch's references into the request it scanned, keeping its memory.
func (b *Batch) Release() {
	clear(b.Groups)
	clear(b.Spans)
	b.Groups, b.Spans, b.group = b.Groups[:0], b.Spans[:0], b.group[:0]
}

func sameGroup(a, b *Group) bool {
	return same(a.Resource, b.Resource) && same(a.Scope, b.Scope) &&
		same(a.ResourceSchemaURL, b.ResourceSchemaURL) && same(a.ScopeSchemaURL, b.ScopeSchemaURL)
}

// same reports whether a and b are the same bytes of one request (not merely equal content).
func same(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
