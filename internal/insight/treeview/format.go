package treeview

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// formatDuration prints d with three significant digits in the largest unit
// that keeps the number at least 1, as the guide writes durations (250ms,
// 1.2s, 850µs).
func formatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + formatDuration(-d)
	}
	if d == 0 {
		return "0ms"
	}
	if d >= time.Hour {
		return fmt.Sprintf("%dh%dm", d/time.Hour, (d%time.Hour)/time.Minute)
	}
	if d >= time.Minute {
		m := d / time.Minute
		return fmt.Sprintf("%dm%ss", m, trimFloat((d-m*time.Minute).Seconds(), 1))
	}
	units := []struct {
		size time.Duration
		name string
	}{{time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "µs"}}
	for i, u := range units {
		if d < u.size {
			continue
		}
		s := sig3(float64(d) / float64(u.size))
		// Rounding can carry into the next unit: 999.96ms is 1s, not 1000ms.
		if s == "1000" && i > 0 {
			return "1" + units[i-1].name
		}
		return s + u.name
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

func sig3(v float64) string {
	dec := 2
	switch {
	case v >= 100:
		dec = 0
	case v >= 10:
		dec = 1
	}
	return trimFloat(v, dec)
}

func trimFloat(v float64, dec int) string {
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// formatValue prints an attribute value the way the guide's "Result in
// Grafana/Tempo" does: strings quoted, everything else bare.
func formatValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return strconv.Quote(x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return "0x" + hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, formatValue(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *commonpb.AnyValue_KvlistValue:
		return "{" + formatKVs(x.KvlistValue.GetValues()) + "}"
	default:
		return "null"
	}
}

func formatKVs(kvs []*commonpb.KeyValue) string {
	parts := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		parts = append(parts, clean(kv.GetKey())+": "+formatValue(kv.GetValue()))
	}
	return strings.Join(parts, ", ")
}

// clean keeps one span on one line and stops names sent by any client from
// smuggling escape sequences into the user's terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// width counts runes: every character the renderer itself emits is one
// column wide; East Asian wide characters in names will overrun slightly.
func width(s string) int { return utf8.RuneCountInString(s) }

func truncate(s string, n int) string {
	if width(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

const (
	ansiRed   = "\x1b[31m"
	ansiDim   = "\x1b[2m"
	ansiReset = "\x1b[0m"
)

// seg is one piece of an output line. Pieces with shrink > 0 give up
// characters (down to min) to keep the line within the width, highest shrink
// first; colour codes are added after fitting so they never count as width.
type seg struct {
	text   string
	color  string
	shrink int
	min    int
}

func fit(segs []seg, w int) []seg {
	total := 0
	for _, s := range segs {
		total += width(s.text)
	}
	for prio := 3; prio >= 1 && total > w; prio-- {
		for i := range segs {
			if segs[i].shrink != prio || total <= w {
				continue
			}
			cur := width(segs[i].text)
			target := max(segs[i].min, cur-(total-w))
			if target < cur {
				segs[i].text = truncate(segs[i].text, target)
				total -= cur - width(segs[i].text)
			}
		}
	}
	if total <= w {
		return segs
	}
	// Deep nesting can leave too little room even for the minimums: cut the
	// line itself.
	out := segs[:0:0]
	left := w
	for i, s := range segs {
		n := width(s.text)
		if n < left || (n == left && i == len(segs)-1) {
			out = append(out, s)
			left -= n
			continue
		}
		if left > 0 {
			r := []rune(s.text)
			s.text = string(r[:left-1]) + "…"
			out = append(out, s)
		}
		break
	}
	return out
}

func (r *renderer) line(segs ...seg) {
	segs = fit(segs, r.width)
	var b strings.Builder
	for _, s := range segs {
		if s.text == "" {
			continue
		}
		if r.color && s.color != "" {
			b.WriteString(s.color + s.text + ansiReset)
		} else {
			b.WriteString(s.text)
		}
	}
	b.WriteByte('\n')
	if r.err == nil {
		_, r.err = r.w.Write([]byte(b.String()))
	}
}
