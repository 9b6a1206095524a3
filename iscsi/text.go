package iscsi

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// keyValue is one key=value pair of a login or text PDU.
type keyValue struct {
	Key, Value string
}

// Limits of RFC 7143 section 6.1: keys of at most 63 bytes; values of at
// most 255 bytes except binary and text values such as CHAP challenges,
// which may reach 8192 bytes.
const (
	maxKeyLen   = 63
	maxValueLen = 8192
)

// parseText decodes the data segment of a login or text PDU: pairs
// key=value, each terminated by a NUL byte (a missing final NUL is
// tolerated, padding NULs are skipped). It rejects malformed keys and
// duplicates, as RFC 7143 section 6.2 requires.
func parseText(b []byte) ([]keyValue, error) {
	var out []keyValue
	seen := map[string]bool{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		var item []byte
		if i < 0 {
			item, b = b, nil
		} else {
			item, b = b[:i], b[i+1:]
		}
		if len(item) == 0 {
			continue
		}
		eq := bytes.IndexByte(item, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: text item %q has no '='", ErrProtocol, truncate(item))
		}
		key, value := string(item[:eq]), string(item[eq+1:])
		if err := checkKey(key); err != nil {
			return nil, err
		}
		if len(value) > maxValueLen {
			return nil, fmt.Errorf("%w: value of %s is %d bytes long", ErrProtocol, key, len(value))
		}
		// SendTargets answers repeat TargetName and TargetAddress by design.
		if seen[key] && key != "TargetName" && key != "TargetAddress" {
			return nil, fmt.Errorf("%w: key %s repeated", ErrProtocol, key)
		}
		seen[key] = true
		out = append(out, keyValue{key, value})
	}
	return out, nil
}

func checkKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%w: bad key length %d", ErrProtocol, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '+' || c == '@' || c == '_'
		if !ok {
			return fmt.Errorf("%w: bad character %q in key %q", ErrProtocol, c, truncate([]byte(key)))
		}
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// encodeText is the inverse of parseText.
func encodeText(kvs []keyValue) []byte {
	var b []byte
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}

// textMap gives the last value of every key.
func textMap(kvs []keyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// params are the operational parameters of a session after negotiation.
type params struct {
	headerDigest bool
	dataDigest   bool
	// maxRecvData is what we declared: the largest data segment the target
	// may send us.
	maxRecvData int
	// maxXmitData is what the target declared: the largest data segment we
	// may send.
	maxXmitData       int
	maxBurst          int
	firstBurst        int
	immediateData     bool
	initialR2T        bool
	maxOutstandingR2T int
}

// defaultParams are RFC 7143's defaults, which hold for keys the target
// does not answer.
func defaultParams() params {
	return params{
		maxRecvData:       8192,
		maxXmitData:       8192,
		maxBurst:          262144,
		firstBurst:        65536,
		immediateData:     true,
		initialR2T:        true,
		maxOutstandingR2T: 1,
	}
}

// offer lists the operational keys the initiator proposes.
func (o *Options) offer() []keyValue {
	digest := func(on bool) string {
		if on {
			return "CRC32C"
		}
		return "None"
	}
	return []keyValue{
		{"HeaderDigest", digest(o.HeaderDigest)},
		{"DataDigest", digest(o.DataDigest)},
		{"MaxRecvDataSegmentLength", strconv.Itoa(o.MaxRecvDataSegmentLength)},
		{"MaxBurstLength", strconv.Itoa(o.MaxBurstLength)},
		{"FirstBurstLength", strconv.Itoa(o.FirstBurstLength)},
		{"ImmediateData", "Yes"},
		{"InitialR2T", "No"},
		{"MaxOutstandingR2T", "1"},
		{"MaxConnections", "1"},
		{"DataPDUInOrder", "Yes"},
		{"DataSequenceInOrder", "Yes"},
		{"DefaultTime2Wait", "0"},
		{"DefaultTime2Retain", "0"},
		{"ErrorRecoveryLevel", "0"},
		{"IFMarker", "No"},
		{"OFMarker", "No"},
	}
}

// applyAnswer folds the target's answers to our offer (and its own
// declarations) into p. It fails when an answer is not a legal outcome of
// what we offered (RFC 7143 section 5.3 and chapter 13).
func (p *params) applyAnswer(o *Options, kvs []keyValue) error {
	for _, kv := range kvs {
		k, v := kv.Key, kv.Value
		var err error
		switch k {
		case "HeaderDigest", "DataDigest":
			want := o.HeaderDigest
			if k == "DataDigest" {
				want = o.DataDigest
			}
			wantV := "None"
			if want {
				wantV = "CRC32C"
			}
			if v != wantV {
				return fmt.Errorf("target answered %s=%s to our offer %s=%s", k, v, k, wantV)
			}
			on := want
			if k == "HeaderDigest" {
				p.headerDigest = on
			} else {
				p.dataDigest = on
			}
		case "MaxRecvDataSegmentLength":
			// Declarative: the largest segment the target accepts from us.
			p.maxXmitData, err = numberIn(k, v, 512, maxDataSegment)
		case "MaxBurstLength":
			p.maxBurst, err = numberIn(k, v, 512, o.MaxBurstLength)
		case "FirstBurstLength":
			p.firstBurst, err = numberIn(k, v, 512, o.FirstBurstLength)
		case "MaxOutstandingR2T":
			p.maxOutstandingR2T, err = numberIn(k, v, 1, 1)
		case "ImmediateData":
			p.immediateData, err = boolAnswer(k, v, true)
		case "InitialR2T":
			p.initialR2T, err = boolAnswer(k, v, false)
		case "MaxConnections":
			_, err = numberIn(k, v, 1, 1)
		case "ErrorRecoveryLevel":
			_, err = numberIn(k, v, 0, 0)
		case "DataPDUInOrder", "DataSequenceInOrder":
			if v != "Yes" {
				err = fmt.Errorf("target answered %s=%s; this initiator needs Yes", k, v)
			}
		}
		if err != nil {
			return err
		}
	}
	if p.firstBurst > p.maxBurst {
		return fmt.Errorf("%w: FirstBurstLength %d > MaxBurstLength %d", ErrProtocol, p.firstBurst, p.maxBurst)
	}
	return nil
}

func numberIn(key, v string, lo, hi int) (int, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 0, 32)
	if err != nil || int(n) < lo || int(n) > hi {
		return 0, fmt.Errorf("target answered %s=%q, want a number in [%d, %d]", key, v, lo, hi)
	}
	return int(n), nil
}

// boolAnswer checks an answer to a Boolean we offered as offered; the
// result function (AND or OR) only lets the target move to the other
// value when that is the function's absorbing value.
func boolAnswer(key, v string, offered bool) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return offered, fmt.Errorf("target answered %s=%q", key, v)
}
