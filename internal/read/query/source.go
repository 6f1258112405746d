package query

// Source returns what the querier reads, for the parts of the API (TraceQL search) that read
// the head and blocks themselves.
func (q *Querier) Source() Source { return q.src }
