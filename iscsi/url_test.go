package iscsi_test

import (
	"testing"

	"github.com/ahvfs/ahvfs/iscsi"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		in   string
		want iscsi.URL
		err  bool
	}{
		{in: "iscsi://10.0.0.5/iqn.2010-06.com.nutanix:vg1/1",
			want: iscsi.URL{Portal: "10.0.0.5:3260", TargetIQN: "iqn.2010-06.com.nutanix:vg1", LUN: 1, HasLUN: true}},
		{in: "iscsi://user%se%cret@10.0.0.5:3261/iqn.x:y/0",
			want: iscsi.URL{Portal: "10.0.0.5:3261", TargetIQN: "iqn.x:y", HasLUN: true, CHAP: iscsi.CHAP{User: "user", Secret: "se%cret"}}},
		{in: "iscsi://u%p@[::1]:3300/",
			want: iscsi.URL{Portal: "[::1]:3300", CHAP: iscsi.CHAP{User: "u", Secret: "p"}}},
		{in: "iscsi://host", want: iscsi.URL{Portal: "host:3260"}},
		{in: "iscsi://h/iqn.x:y?target_user=t&target_password=tp&header_digest=crc32c",
			want: iscsi.URL{Portal: "h:3260", TargetIQN: "iqn.x:y", HeaderDigest: true, CHAP: iscsi.CHAP{TargetUser: "t", TargetSecret: "tp"}}},
		{in: "iscsi://h/iqn.x:y/1?data_digest=CRC32C",
			want: iscsi.URL{Portal: "h:3260", TargetIQN: "iqn.x:y", LUN: 1, HasLUN: true, DataDigest: true}},
		{in: "http://h/iqn/1", err: true},
		{in: "iscsi:///iqn/1", err: true},
		{in: "iscsi://h/iqn/x", err: true},
		{in: "iscsi://h/iqn/99999", err: true},
		{in: "iscsi://h//1", err: true},
		{in: "iscsi://h:port/iqn", err: true},
		{in: "iscsi://h/iqn?bogus=1", err: true},
		{in: "iscsi://%p@h/iqn", err: true},
	}
	for _, tc := range cases {
		u, err := iscsi.ParseURL(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseURL(%q) = %+v, want an error", tc.in, u)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.in, err)
			continue
		}
		if *u != tc.want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", tc.in, *u, tc.want)
		}
	}
	u, _ := iscsi.ParseURL("iscsi://user%secret@h/iqn.x:y/2")
	if s := u.String(); s != "iscsi://user@h:3260/iqn.x:y/2" {
		t.Errorf("String() = %q: the secret must not show", s)
	}
}
