package xva

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxDepth bounds how deeply XML-RPC values may nest (a struct in an array
// in a struct ... counts one level each). Real ova.xml files nest about six
// levels; the bound keeps a hostile document from exhausting the stack.
const MaxDepth = 64

// dateTime layouts accepted when decoding, most common first. XAPI writes
// "19700101T00:00:00Z"; the XML-RPC specification's example has no zone
// (read as UTC); RFC 3339 appears in hand-written files.
var dateLayouts = []string{
	"20060102T15:04:05Z",
	"20060102T15:04:05",
	"20060102T15:04:05Z07:00",
	"20060102T15:04:05Z0700",
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
}

// dateEncodeLayout writes UTC with the fraction only when there is one, so
// that every decoded time survives an encode/decode round trip.
const dateEncodeLayout = "20060102T15:04:05.999999999Z"

// DecodeValue decodes one XML-RPC <value> element (with optional XML
// declaration, comments and surrounding white space) into Go values:
//
//	<string>, bare text in <value>  string
//	<int>, <i4>, <i8>               int64
//	<boolean>                       bool ("1"/"0"; "true"/"false" accepted)
//	<double>                        float64
//	<dateTime.iso8601>              time.Time, in UTC
//	<base64>                        []byte
//	<struct>                        map[string]any
//	<array>                         []any
//	<nil/>                          nil
//
// Anything else — another root element, unknown type elements, text mixed
// with elements, trailing elements, nesting deeper than MaxDepth — is an
// error wrapping ErrCorrupt.
func DecodeValue(b []byte) (any, error) { return decodeValue(b, "XML-RPC value") }

// decodeValue is DecodeValue with what naming the document in errors.
func decodeValue(b []byte, what string) (any, error) {
	p := newParser(b, what)
	root, err := p.root()
	if err != nil {
		return nil, err
	}
	if root.Name.Local != "value" {
		return nil, p.errf("the root element is <%s>, want an XML-RPC <value>", root.Name.Local)
	}
	v, err := p.value("value")
	if err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	return v, nil
}

// EncodeValue encodes v as one XML-RPC <value> element, the inverse of
// DecodeValue: strings are written as bare text (as XAPI does), integers as
// <i8>, time.Time as <dateTime.iso8601> in UTC, map keys in sorted order.
// Besides the types DecodeValue returns it accepts the other Go integer
// types, float32, []string and map[string]string.
func EncodeValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := appendValue(&buf, v, "value", 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parser is a recursive-descent reader of XML-RPC values over the tokens of
// encoding/xml.
type parser struct {
	d     *xml.Decoder
	what  string // the document, for messages
	depth int
}

func newParser(b []byte, what string) *parser {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	return &parser{d: d, what: what}
}

// errf reports a malformed document with the decoder's position.
func (p *parser) errf(format string, args ...any) error {
	line, col := p.d.InputPos()
	return fmt.Errorf("xva: %s, line %d column %d: %s: %w", p.what, line, col, fmt.Sprintf(format, args...), ErrCorrupt)
}

// token returns the next start element, end element or character data,
// skipping comments, processing instructions and directives.
func (p *parser) token() (xml.Token, error) {
	for {
		tok, err := p.d.Token()
		if err != nil {
			if err == io.EOF {
				return nil, p.errf("the document ends early")
			}
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("xva: %s is not XML: line %d: %s: %w", p.what, se.Line, se.Msg, ErrCorrupt)
			}
			return nil, fmt.Errorf("xva: %s is not XML: %v: %w", p.what, err, ErrCorrupt)
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			return t, nil
		}
	}
}

// root returns the first element of the document; only white space may
// come before it.
func (p *parser) root() (xml.StartElement, error) {
	for {
		tok, err := p.token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if !isSpace(t) {
				return xml.StartElement{}, p.errf("text before the root element")
			}
		default:
			return xml.StartElement{}, p.errf("unexpected end element")
		}
	}
}

// end checks that only white space (and comments) follow the root element.
func (p *parser) end() error {
	for {
		tok, err := p.d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("xva: %s is not XML after the root element: %v: %w", p.what, err, ErrCorrupt)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return p.errf("a second root element <%s>", t.Name.Local)
		case xml.CharData:
			if !isSpace(t) {
				return p.errf("text after the root element")
			}
		}
	}
}

// value parses the content of a <value> element whose start tag was just
// read, through its end tag. path names the value in error messages.
func (p *parser) value(path string) (any, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > MaxDepth {
		return nil, p.errf("%s: values nest deeper than %d levels", path, MaxDepth)
	}
	var text []byte
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text = append(text, t...)
		case xml.EndElement:
			// Bare text is a string (XAPI writes strings this way).
			return string(text), nil
		case xml.StartElement:
			if !isSpace(text) {
				return nil, p.errf("%s: text mixed with <%s>", path, t.Name.Local)
			}
			v, err := p.typed(t.Name.Local, path)
			if err != nil {
				return nil, err
			}
			if err := p.close("value", path); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

// close reads up to the end tag of the current element, allowing only
// white space before it.
func (p *parser) close(name, path string) error {
	return p.children(path, name, func(t xml.StartElement) error {
		return p.errf("%s: <%s> where </%s> was expected", path, t.Name.Local, name)
	})
}

// children reads the content of element in (whose start tag was just
// read) through its end tag: white space is skipped, other text is an
// error, and each child element's start tag goes to each, which must read
// that child through its own end tag.
func (p *parser) children(path, in string, each func(xml.StartElement) error) error {
	for {
		tok, err := p.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !isSpace(t) {
				return p.errf("%s: text inside <%s>", path, in)
			}
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if err := each(t); err != nil {
				return err
			}
		}
	}
}

// text reads the character data of a leaf element through its end tag.
func (p *parser) text(name, path string) (string, error) {
	var b []byte
	for {
		tok, err := p.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			b = append(b, t...)
		case xml.EndElement:
			return string(b), nil
		case xml.StartElement:
			return "", p.errf("%s: <%s> inside <%s>", path, t.Name.Local, name)
		}
	}
}

// typed parses a type element (<int>, <struct>, ...) whose start tag was
// just read, through its end tag.
func (p *parser) typed(name, path string) (any, error) {
	switch name {
	case "string":
		return p.text(name, path)
	case "int", "i4", "i8":
		s, err := p.text(name, path)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(trimSpace(s), 10, 64)
		if err != nil {
			return nil, p.errf("%s: <%s> %q is not a 64-bit integer", path, name, s)
		}
		return n, nil
	case "boolean":
		s, err := p.text(name, path)
		if err != nil {
			return nil, err
		}
		switch trimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, p.errf("%s: <boolean> %q is neither 0 nor 1", path, s)
	case "double":
		s, err := p.text(name, path)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(trimSpace(s), 64)
		if err != nil {
			return nil, p.errf("%s: <double> %q is not a number", path, s)
		}
		return f, nil
	case "dateTime.iso8601":
		s, err := p.text(name, path)
		if err != nil {
			return nil, err
		}
		t, ok := parseDate(trimSpace(s))
		if !ok {
			return nil, p.errf("%s: <dateTime.iso8601> %q is not a date and time", path, s)
		}
		return t, nil
	case "base64":
		s, err := p.text(name, path)
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(strings.Map(dropSpace, s))
		if err != nil {
			return nil, p.errf("%s: <base64> is not base64: %v", path, err)
		}
		return b, nil
	case "nil":
		if err := p.close(name, path); err != nil {
			return nil, err
		}
		return nil, nil
	case "struct":
		return p.structure(path)
	case "array":
		return p.array(path)
	}
	return nil, p.errf("%s: <%s> is not an XML-RPC type", path, name)
}

// structure parses the members of a <struct> through its end tag.
func (p *parser) structure(path string) (map[string]any, error) {
	m := map[string]any{}
	err := p.children(path, "struct", func(t xml.StartElement) error {
		if t.Name.Local != "member" {
			return p.errf("%s: <%s> inside <struct>, want <member>", path, t.Name.Local)
		}
		name, v, err := p.member(path)
		if err != nil {
			return err
		}
		if _, dup := m[name]; dup {
			return p.errf("%s: member %q appears twice", path, name)
		}
		m[name] = v
		return nil
	})
	return m, err
}

// member parses <name> and <value> of a struct member through </member>.
func (p *parser) member(path string) (string, any, error) {
	var (
		name           string
		v              any
		gotName, gotVa bool
	)
	err := p.children(path, "member", func(t xml.StartElement) error {
		var err error
		switch {
		case t.Name.Local == "name" && !gotName:
			name, err = p.text("name", path)
			gotName = true
		case t.Name.Local == "value" && !gotVa:
			sub := path + ".?"
			if gotName {
				sub = path + "." + name
			}
			v, err = p.value(sub)
			gotVa = true
		default:
			err = p.errf("%s: unexpected <%s> inside <member>", path, t.Name.Local)
		}
		return err
	})
	switch {
	case err != nil:
		return "", nil, err
	case !gotName:
		return "", nil, p.errf("%s: <member> without <name>", path)
	case !gotVa:
		return "", nil, p.errf("%s.%s: <member> without <value>", path, name)
	}
	return name, v, nil
}

// array parses <data> and its values through </array>. <array/> is an
// empty array.
func (p *parser) array(path string) ([]any, error) {
	out := []any{}
	seenData := false
	err := p.children(path, "array", func(t xml.StartElement) error {
		if t.Name.Local != "data" || seenData {
			return p.errf("%s: <%s> inside <array>, want one <data>", path, t.Name.Local)
		}
		seenData = true
		var err error
		out, err = p.data(path)
		return err
	})
	return out, err
}

// data parses the values of <data> through </data>.
func (p *parser) data(path string) ([]any, error) {
	out := []any{}
	err := p.children(path, "data", func(t xml.StartElement) error {
		if t.Name.Local != "value" {
			return p.errf("%s: <%s> inside <data>, want <value>", path, t.Name.Local)
		}
		v, err := p.value(path + "[" + strconv.Itoa(len(out)) + "]")
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

func parseDate(s string) (time.Time, bool) {
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			t = t.UTC()
			// Only years that the encoder can write back in four digits.
			if t.Year() < 0 || t.Year() > 9999 {
				return time.Time{}, false
			}
			return t, true
		}
	}
	return time.Time{}, false
}

// isSpace reports whether b is XML white space only.
func isSpace[T ~[]byte | ~string](b T) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

func trimSpace(s string) string { return strings.Trim(s, " \t\r\n") }

func dropSpace(r rune) rune {
	switch r {
	case ' ', '\t', '\n', '\r':
		return -1
	}
	return r
}

// appendValue writes v as <value>...</value>.
func appendValue(buf *bytes.Buffer, v any, path string, depth int) error {
	if depth >= MaxDepth {
		return fmt.Errorf("xva: encode %s: values nest deeper than %d levels", path, MaxDepth)
	}
	buf.WriteString("<value>")
	switch x := v.(type) {
	case nil:
		buf.WriteString("<nil/>")
	case string:
		escape(buf, x)
	case bool:
		if x {
			buf.WriteString("<boolean>1</boolean>")
		} else {
			buf.WriteString("<boolean>0</boolean>")
		}
	case int:
		appendInt(buf, int64(x))
	case int8:
		appendInt(buf, int64(x))
	case int16:
		appendInt(buf, int64(x))
	case int32:
		appendInt(buf, int64(x))
	case int64:
		appendInt(buf, x)
	case uint8:
		appendInt(buf, int64(x))
	case uint16:
		appendInt(buf, int64(x))
	case uint32:
		appendInt(buf, int64(x))
	case uint:
		if uint64(x) > math.MaxInt64 {
			return fmt.Errorf("xva: encode %s: %d does not fit an <i8>", path, x)
		}
		appendInt(buf, int64(x))
	case uint64:
		if x > math.MaxInt64 {
			return fmt.Errorf("xva: encode %s: %d does not fit an <i8>", path, x)
		}
		appendInt(buf, int64(x))
	case float32:
		appendFloat(buf, float64(x))
	case float64:
		appendFloat(buf, x)
	case time.Time:
		t := x.UTC()
		if t.Year() < 0 || t.Year() > 9999 {
			return fmt.Errorf("xva: encode %s: year %d does not fit a <dateTime.iso8601>", path, t.Year())
		}
		buf.WriteString("<dateTime.iso8601>")
		buf.WriteString(t.Format(dateEncodeLayout))
		buf.WriteString("</dateTime.iso8601>")
	case []byte:
		buf.WriteString("<base64>")
		buf.WriteString(base64.StdEncoding.EncodeToString(x))
		buf.WriteString("</base64>")
	case []any:
		buf.WriteString("<array><data>")
		for i, e := range x {
			if err := appendValue(buf, e, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		buf.WriteString("</data></array>")
	case []string:
		buf.WriteString("<array><data>")
		for _, e := range x {
			buf.WriteString("<value>")
			escape(buf, e)
			buf.WriteString("</value>")
		}
		buf.WriteString("</data></array>")
	case map[string]any:
		buf.WriteString("<struct>")
		for _, k := range sortedKeys(x) {
			buf.WriteString("<member><name>")
			escape(buf, k)
			buf.WriteString("</name>")
			if err := appendValue(buf, x[k], path+"."+k, depth+1); err != nil {
				return err
			}
			buf.WriteString("</member>")
		}
		buf.WriteString("</struct>")
	case map[string]string:
		buf.WriteString("<struct>")
		for _, k := range sortedKeys(x) {
			buf.WriteString("<member><name>")
			escape(buf, k)
			buf.WriteString("</name><value>")
			escape(buf, x[k])
			buf.WriteString("</value></member>")
		}
		buf.WriteString("</struct>")
	default:
		return fmt.Errorf("xva: encode %s: cannot encode a %T as XML-RPC", path, v)
	}
	buf.WriteString("</value>")
	return nil
}

func appendInt(buf *bytes.Buffer, n int64) {
	buf.WriteString("<i8>")
	buf.WriteString(strconv.FormatInt(n, 10))
	buf.WriteString("</i8>")
}

func appendFloat(buf *bytes.Buffer, f float64) {
	buf.WriteString("<double>")
	buf.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
	buf.WriteString("</double>")
}

// escape writes s as XML character data. Characters XML cannot carry are
// replaced by U+FFFD (what encoding/xml does).
func escape(buf *bytes.Buffer, s string) {
	_ = xml.EscapeText(buf, []byte(s))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
