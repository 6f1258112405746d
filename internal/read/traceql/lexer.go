package traceql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

type tokenKind int

const (
	tEOF tokenKind = iota
	tIdent
	tAttr
	tString
	tInt
	tFloat
	tDuration

	tLBrace
	tRBrace
	tLParen
	tRParen
	tComma
	tPipe

	tAnd // &&
	tOr  // ||
	tNot // !

	tEq  // =
	tNeq // !=
	tRe  // =~
	tNre // !~ (also "not sibling" between spansets)
	tGt  // > (also "child")
	tGte // >=
	tLt  // < (also "parent")
	tLte // <=

	tDesc  // >>
	tAnc   // <<
	tTilde // ~

	tNotDesc   // !>>
	tNotChild  // !>
	tNotAnc    // !<<
	tNotParent // !<

	tUnionDesc   // &>>
	tUnionChild  // &>
	tUnionSib    // &~
	tUnionAnc    // &<<
	tUnionParent // &<

	tPlus
	tMinus
	tStar
	tSlash
	tPercent
	tCaret
)

// token is one lexeme. text is the exact source slice, kept for error
// messages; the value fields hold the decoded literal.
type token struct {
	kind tokenKind
	pos  int
	text string

	str  string
	i    int64
	f    float64
	d    time.Duration
	attr Attribute
}

// operators is searched in order, so longer spellings come before their
// prefixes.
var operators = []struct {
	text string
	kind tokenKind
}{
	{"&&", tAnd}, {"&>>", tUnionDesc}, {"&>", tUnionChild}, {"&~", tUnionSib}, {"&<<", tUnionAnc}, {"&<", tUnionParent},
	{"||", tOr}, {"|", tPipe},
	{"!=", tNeq}, {"!~", tNre}, {"!>>", tNotDesc}, {"!>", tNotChild}, {"!<<", tNotAnc}, {"!<", tNotParent}, {"!", tNot},
	{"=~", tRe}, {"=", tEq},
	{">>", tDesc}, {">=", tGte}, {">", tGt},
	{"<<", tAnc}, {"<=", tLte}, {"<", tLt},
	{"~", tTilde},
	{"{", tLBrace}, {"}", tRBrace}, {"(", tLParen}, {")", tRParen}, {",", tComma},
	{"+", tPlus}, {"-", tMinus}, {"*", tStar}, {"/", tSlash}, {"%", tPercent}, {"^", tCaret},
}

// nameTerminators end a bare attribute name. "-", "/", ":" and "." are not
// among them because semantic-convention names use them, so arithmetic on
// an attribute needs spaces: "span.a - 1", not "span.a-1".
const nameTerminators = "{}()=!~<>&|,\"`+*%^"

func isNameRune(r rune) bool {
	return r > ' ' && r != 0x7f && r != utf8.RuneError && !unicode.IsSpace(r) &&
		!strings.ContainsRune(nameTerminators, r)
}

func isIdentStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentByte(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

type lexer struct {
	src string
	pos int
}

// next returns the next token, or a *ParseError for malformed input.
func (lx *lexer) next() (token, error) {
	for lx.pos < len(lx.src) {
		r, size := utf8.DecodeRuneInString(lx.src[lx.pos:])
		if !unicode.IsSpace(r) {
			break
		}
		lx.pos += size
	}
	start := lx.pos
	if start >= len(lx.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := lx.src[start]
	switch {
	case c == '"':
		s, err := lx.quoted()
		return token{kind: tString, pos: start, text: lx.src[start:lx.pos], str: s}, err
	case c == '`':
		end := strings.IndexByte(lx.src[start+1:], '`')
		if end < 0 {
			return token{}, lx.errorf(start, nil, "unterminated string: missing closing \"`\"")
		}
		lx.pos = start + 1 + end + 1
		return token{kind: tString, pos: start, text: lx.src[start:lx.pos], str: lx.src[start+1 : start+1+end]}, nil
	case isDigit(c) || (c == '.' && start+1 < len(lx.src) && isDigit(lx.src[start+1])):
		return lx.number()
	case c == '.':
		lx.pos++
		return lx.attribute(start, ScopeNone)
	case isIdentStart(c):
		return lx.ident()
	}
	for _, op := range operators {
		if strings.HasPrefix(lx.src[start:], op.text) {
			lx.pos += len(op.text)
			return token{kind: op.kind, pos: start, text: op.text}, nil
		}
	}
	if c == '&' {
		return token{}, lx.errorf(start, nil, `unexpected "&", expected "&&" or a union structural operator ("&>>", "&>", "&~", "&<<", "&<")`)
	}
	r, _ := utf8.DecodeRuneInString(lx.src[start:])
	return token{}, lx.errorf(start, nil, "unexpected character %q", r)
}

// ident lexes a keyword or intrinsic, which may carry a "scope:" prefix,
// or a scoped attribute when the word is a scope followed by ".".
func (lx *lexer) ident() (token, error) {
	start := lx.pos
	for lx.pos < len(lx.src) && isIdentByte(lx.src[lx.pos]) {
		lx.pos++
	}
	word := lx.src[start:lx.pos]
	if lx.pos < len(lx.src) {
		switch lx.src[lx.pos] {
		case '.':
			if scope, ok := scopeByName[word]; ok {
				lx.pos++
				return lx.attribute(start, scope)
			}
		case ':':
			lx.pos++
			nameStart := lx.pos
			for lx.pos < len(lx.src) && isIdentByte(lx.src[lx.pos]) {
				lx.pos++
			}
			if lx.pos == nameStart {
				return token{}, lx.errorf(start, nil, "expected an intrinsic name after %q", word+":")
			}
		}
	}
	return token{kind: tIdent, pos: start, text: lx.src[start:lx.pos]}, nil
}

// attribute lexes the name after "scope." or a bare ".", which lx.pos is
// just past. A name is bare runs and quoted strings joined by dots, so
// `span.http."status code"` and `span."a b".c` work as well as
// `span."http.status_code"`.
func (lx *lexer) attribute(start int, scope AttributeScope) (token, error) {
	tok := token{kind: tAttr, pos: start, attr: Attribute{Scope: scope}}
	var name strings.Builder
	for {
		if lx.pos < len(lx.src) && lx.src[lx.pos] == '"' {
			part, err := lx.quoted()
			if err != nil {
				return token{}, err
			}
			name.WriteString(part)
			// A quoted part continues only with a dot and more name.
			if lx.pos+1 < len(lx.src) && lx.src[lx.pos] == '.' && (lx.src[lx.pos+1] == '"' || isNameRune(rune(lx.src[lx.pos+1]))) {
				name.WriteByte('.')
				lx.pos++
				continue
			}
			break
		}
		nameStart := lx.pos
		for lx.pos < len(lx.src) {
			r, size := utf8.DecodeRuneInString(lx.src[lx.pos:])
			if !isNameRune(r) {
				break
			}
			lx.pos += size
		}
		if lx.pos == nameStart {
			return token{}, lx.errorf(start, nil, "expected an attribute name after %q", lx.src[start:nameStart])
		}
		part := lx.src[nameStart:lx.pos]
		name.WriteString(part)
		// "http." followed by a quote: the quoted part is the rest of the name.
		if !strings.HasSuffix(part, ".") || lx.pos >= len(lx.src) || lx.src[lx.pos] != '"' {
			break
		}
	}
	tok.attr.Name = name.String()
	tok.text = lx.src[start:lx.pos]
	return tok, nil
}

// quoted lexes a double-quoted string with Go escapes. Escapes are decoded
// one at a time so a bad one is reported where it stands.
func (lx *lexer) quoted() (string, error) {
	start := lx.pos
	lx.pos++
	var b strings.Builder
	for {
		if lx.pos >= len(lx.src) {
			return "", lx.errorf(start, nil, "unterminated string: missing closing '\"'")
		}
		c := lx.src[lx.pos]
		switch c {
		case '"':
			lx.pos++
			return b.String(), nil
		case '\\':
			rest := lx.src[lx.pos:]
			v, multibyte, tail, err := strconv.UnquoteChar(rest, '"')
			if err != nil {
				esc := rest[:min(2, len(rest))]
				return "", lx.errorf(lx.pos, err, "invalid escape `%s` in string (write regular expressions in `backticks` to avoid escaping)", esc)
			}
			if multibyte {
				b.WriteRune(v)
			} else {
				b.WriteByte(byte(v))
			}
			lx.pos += len(rest) - len(tail)
		default:
			b.WriteByte(c)
			lx.pos++
		}
	}
}

// number lexes an int, a float or a duration. A number followed directly by
// letters is a duration ("1.5s", "1h30m"), checked by time.ParseDuration.
func (lx *lexer) number() (token, error) {
	start := lx.pos
	isFloat := lx.digits()
	isDuration := false
	for lx.pos < len(lx.src) && lx.unitStart() {
		isDuration = true
		for lx.pos < len(lx.src) && lx.unitStart() {
			_, size := utf8.DecodeRuneInString(lx.src[lx.pos:])
			lx.pos += size
		}
		if lx.pos < len(lx.src) && (isDigit(lx.src[lx.pos]) || lx.src[lx.pos] == '.') {
			lx.digits()
		}
	}
	text := lx.src[start:lx.pos]
	if lx.pos < len(lx.src) {
		if c := lx.src[lx.pos]; c == '.' || isIdentByte(c) {
			return token{}, lx.errorf(start, nil, "malformed number %q", lx.src[start:lx.pos+1])
		}
	}
	tok := token{pos: start, text: text}
	switch {
	case isDuration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return token{}, lx.errorf(start, err, "bad duration %q: want a number and unit (ns, us, µs, ms, s, m, h), as in 100ms or 1.5s", text)
		}
		tok.kind, tok.d = tDuration, d
	case isFloat:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return token{}, lx.errorf(start, err, "float %s out of range", text)
		}
		tok.kind, tok.f = tFloat, f
	default:
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return token{}, lx.errorf(start, err, "integer %s out of range", text)
		}
		tok.kind, tok.i = tInt, i
	}
	return tok, nil
}

// digits consumes "123", "1.5" or ".5" and reports whether it saw a
// fraction. A "." not followed by a digit is left alone.
func (lx *lexer) digits() bool {
	for lx.pos < len(lx.src) && isDigit(lx.src[lx.pos]) {
		lx.pos++
	}
	if lx.pos+1 < len(lx.src) && lx.src[lx.pos] == '.' && isDigit(lx.src[lx.pos+1]) {
		lx.pos++
		for lx.pos < len(lx.src) && isDigit(lx.src[lx.pos]) {
			lx.pos++
		}
		return true
	}
	return false
}

// unitStart reports whether a duration unit letter is next. Both micro
// signs are accepted because time.ParseDuration accepts both.
func (lx *lexer) unitStart() bool {
	c := lx.src[lx.pos]
	if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') {
		return true
	}
	r, _ := utf8.DecodeRuneInString(lx.src[lx.pos:])
	return r == 'µ' || r == 'μ'
}

func (lx *lexer) errorf(pos int, err error, format string, args ...any) *ParseError {
	return newParseError(lx.src, pos, err, fmt.Sprintf(format, args...))
}

// ParseError is a syntax or type error in a query.
type ParseError struct {
	Pos  int // byte offset into the query
	Line int // 1-based
	Col  int // 1-based, in runes
	Msg  string
	// Err is the underlying error, if any (from regexp, strconv or time).
	Err error
}

func (e *ParseError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// Unwrap gives errors.Is and errors.As access to the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

func newParseError(src string, pos int, err error, msg string) *ParseError {
	pos = min(max(pos, 0), len(src))
	line := 1 + strings.Count(src[:pos], "\n")
	lineStart := strings.LastIndexByte(src[:pos], '\n') + 1
	col := 1 + utf8.RuneCountInString(src[lineStart:pos])
	return &ParseError{Pos: pos, Line: line, Col: col, Msg: msg, Err: err}
}

// ErrParse matches every *ParseError with errors.Is.
var ErrParse = errors.New("traceql: parse error")

// Is makes errors.Is(err, ErrParse) true for every *ParseError.
func (e *ParseError) Is(target error) bool { return target == ErrParse }
