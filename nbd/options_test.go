package nbd_test

import (
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/nbd"
)

func TestOptionsValidate(t *testing.T) {
	good := []nbd.Options{
		{Address: "127.0.0.1:10809"},
		{Address: "nbd.example.com"},
		{Address: "[::1]:1234", Export: "disk"},
		{Address: "[::1]"},
		{Address: "unix:/run/nbd.sock"},
		{Address: "unix:/run/nbd.sock", TLS: true, ServerName: "host"},
		{Address: "h", CertFile: "c", KeyFile: "k", QueueDepth: 1024, MaxRequest: 512},
	}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	// Every problem is reported at once.
	bad := nbd.Options{Address: "host:0", Export: "a\x00b", CertFile: "c", QueueDepth: 5000, MaxRequest: 100, IOTimeout: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{"bad address", "Export", "CertFile", "QueueDepth", "MaxRequest", "IOTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	for _, o := range []nbd.Options{
		{},
		{Address: "unix:"},
		{Address: "host:port"},
		{Address: "a:b:c"},
		{Address: "unix:/s", TLS: true},
		{Address: "h", Export: strings.Repeat("x", 4097)},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		want nbd.Options
	}{
		{"nbd://example.com/disk", nbd.Options{Address: "example.com:10809", Export: "disk"}},
		{"nbd://example.com", nbd.Options{Address: "example.com:10809"}},
		{"nbd://example.com/", nbd.Options{Address: "example.com:10809"}},
		{"nbd://example.com//disk", nbd.Options{Address: "example.com:10809", Export: "/disk"}},
		{"nbd://example.com/hello%20world", nbd.Options{Address: "example.com:10809", Export: "hello world"}},
		{"nbd://[::1]:1234/x", nbd.Options{Address: "[::1]:1234", Export: "x"}},
		{"nbds://10.0.0.1:10809/vdi?tls-hostname=xcp1", nbd.Options{Address: "10.0.0.1:10809", Export: "vdi", TLS: true, ServerName: "xcp1"}},
		{"nbds://h/x?tls-verify-peer=0&tls-type=x509", nbd.Options{Address: "h:10809", Export: "x", TLS: true, InsecureSkipVerify: true}},
		{"nbd+unix:///disk?socket=/run/s.sock", nbd.Options{Address: "unix:/run/s.sock", Export: "disk"}},
		{"nbds+unix:///?socket=s&tls-hostname=n", nbd.Options{Address: "unix:s", TLS: true, ServerName: "n"}},
		{"nbd://h/x?x-mine=1", nbd.Options{Address: "h:10809", Export: "x"}},
	} {
		got, err := nbd.ParseURI(tc.uri)
		if err != nil {
			t.Errorf("%s: %v", tc.uri, err)
			continue
		}
		if got.Address != tc.want.Address || got.Export != tc.want.Export || got.TLS != tc.want.TLS ||
			got.ServerName != tc.want.ServerName || got.InsecureSkipVerify != tc.want.InsecureSkipVerify {
			t.Errorf("%s: %+v, want %+v", tc.uri, got, tc.want)
		}
	}
	for _, bad := range []string{
		"http://h/x", "nbd:opaque", "nbd:///x", "nbd://user@h/x", "nbd+unix:///x", "nbd+unix://h/x?socket=s",
		"nbd://h/x?socket=s", "nbd://h/x?bogus=1", "nbd://h/x?tls-hostname=n", "nbds://h/x?tls-type=psk",
		"nbds://h/x?tls-verify-peer=maybe", "nbd://h:/x", "nbd://h:99999/x", "nbd://h/x?x-a=1&x-a=2",
		"nbds+unix:///x?socket=s",
	} {
		if o, err := nbd.ParseURI(bad); err == nil {
			t.Errorf("%s accepted: %+v", bad, o)
		}
	}
}
