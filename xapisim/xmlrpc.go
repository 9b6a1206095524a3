package xapisim

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// XML-RPC values, as xapi writes them in task results and in an XVA's
// ova.xml: strings as bare <value>text</value>, 64-bit integers as
// strings too (XenAPI's XML-RPC convention), booleans as <boolean>0|1,
// floats as <double>, datetimes as <dateTime.iso8601>, maps as <struct>,
// sets as <array><data>.

// xmlrpcValueText is the XML-RPC text of v, e.g. "<value>OpaqueRef:…</value>".
func xmlrpcValueText(v any) string {
	var b strings.Builder
	writeXMLRPC(&b, v)
	return b.String()
}

func writeXMLRPC(b *strings.Builder, v any) {
	b.WriteString("<value>")
	switch x := v.(type) {
	case nil:
	case string:
		xmlEscape(b, x)
	case bool:
		if x {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString("<double>" + strconv.FormatFloat(x, 'f', -1, 64) + "</double>")
	case time.Time:
		b.WriteString("<dateTime.iso8601>" + xenTime(x) + "</dateTime.iso8601>")
	case map[string]string:
		b.WriteString("<struct>")
		for _, k := range sortedKeys(x) {
			b.WriteString("<member><name>")
			xmlEscape(b, k)
			b.WriteString("</name>")
			writeXMLRPC(b, x[k])
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case map[string]any:
		b.WriteString("<struct>")
		for _, k := range sortedKeys(x) {
			b.WriteString("<member><name>")
			xmlEscape(b, k)
			b.WriteString("</name>")
			writeXMLRPC(b, x[k])
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case []string:
		b.WriteString("<array><data>")
		for _, e := range x {
			writeXMLRPC(b, e)
		}
		b.WriteString("</data></array>")
	case []any:
		b.WriteString("<array><data>")
		for _, e := range x {
			writeXMLRPC(b, e)
		}
		b.WriteString("</data></array>")
	case []map[string]any:
		b.WriteString("<array><data>")
		for _, e := range x {
			writeXMLRPC(b, e)
		}
		b.WriteString("</data></array>")
	default:
		xmlEscape(b, fmt.Sprint(x))
	}
	b.WriteString("</value>")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func xmlEscape(b *strings.Builder, s string) {
	xml.EscapeText(b, []byte(s)) // a strings.Builder never fails
}

// parseXMLRPC reads one XML-RPC <value> document. Values become string,
// int64, bool, float64, map[string]any, []any or nil; datetimes stay
// strings.
func parseXMLRPC(r io.Reader) (any, error) {
	d := xml.NewDecoder(r)
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xml-rpc: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "value" {
				return nil, fmt.Errorf("xml-rpc: document starts with <%s>, not <value>", se.Name.Local)
			}
			return decodeValue(d)
		}
	}
}

// decodeValue reads the rest of a <value> element.
func decodeValue(d *xml.Decoder) (any, error) {
	var text strings.Builder
	var out any
	typed := false
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xml-rpc value: %w", err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.StartElement:
			if typed {
				return nil, fmt.Errorf("xml-rpc: two types in one <value> (<%s>)", t.Name.Local)
			}
			typed = true
			switch t.Name.Local {
			case "struct":
				out, err = decodeStruct(d)
			case "array":
				out, err = decodeArray(d)
			case "nil":
				err = d.Skip()
			default:
				var s string
				if err = d.DecodeElement(&s, &t); err == nil {
					out, err = scalar(t.Name.Local, s)
				}
			}
			if err != nil {
				return nil, err
			}
		case xml.EndElement:
			if !typed {
				return text.String(), nil
			}
			return out, nil
		}
	}
}

func scalar(kind, s string) (any, error) {
	switch kind {
	case "string", "dateTime.iso8601", "base64":
		return s, nil
	case "i4", "i8", "int":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("xml-rpc <%s>%s: %w", kind, s, err)
		}
		return n, nil
	case "boolean":
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, fmt.Errorf("xml-rpc <boolean>%s", s)
	case "double":
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("xml-rpc <double>%s: %w", s, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("xml-rpc: unknown type <%s>", kind)
}

func decodeStruct(d *xml.Decoder) (map[string]any, error) {
	out := map[string]any{}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xml-rpc struct: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "member" {
				return nil, fmt.Errorf("xml-rpc: <%s> in a <struct>", t.Name.Local)
			}
			k, v, err := decodeMember(d)
			if err != nil {
				return nil, err
			}
			out[k] = v
		case xml.EndElement:
			return out, nil
		}
	}
}

func decodeMember(d *xml.Decoder) (string, any, error) {
	var name string
	var val any
	haveName, haveVal := false, false
	for {
		tok, err := d.Token()
		if err != nil {
			return "", nil, fmt.Errorf("xml-rpc member: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "name":
				if err := d.DecodeElement(&name, &t); err != nil {
					return "", nil, err
				}
				haveName = true
			case "value":
				if val, err = decodeValue(d); err != nil {
					return "", nil, err
				}
				haveVal = true
			default:
				return "", nil, fmt.Errorf("xml-rpc: <%s> in a <member>", t.Name.Local)
			}
		case xml.EndElement:
			if !haveName || !haveVal {
				return "", nil, errors.New("xml-rpc: <member> without <name> or <value>")
			}
			return name, val, nil
		}
	}
}

func decodeArray(d *xml.Decoder) ([]any, error) {
	out := []any{}
	depth := 0 // inside <data>
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xml-rpc array: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case t.Name.Local == "data" && depth == 0:
				depth = 1
			case t.Name.Local == "value" && depth == 1:
				v, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			default:
				return nil, fmt.Errorf("xml-rpc: <%s> in an <array>", t.Name.Local)
			}
		case xml.EndElement:
			if t.Name.Local == "data" {
				depth = 0
				continue
			}
			return out, nil
		}
	}
}
