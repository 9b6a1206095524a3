package auth_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

var tokenShape = regexp.MustCompile(`^ahvfs_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`)

// TestTokens: a token has the documented shape, verifies as its user's,
// a user may hold several, the stored record holds no secret, and any
// tampering or the user's removal makes it fail.
func TestTokens(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	us := &auth.Users{Version: 1}
	for _, u := range []auth.User{testUser(t, "alice", auth.RoleAdmin), testUser(t, "bob", auth.RoleOperator)} {
		if err := us.Add(u); err != nil {
			t.Fatal(err)
		}
	}
	a1, err := us.AddToken("alice", "ci", now)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := us.AddToken("alice", "", now)
	b1, _ := us.AddToken("bob", "grafana", now)
	if _, err := us.AddToken("carol", "", now); !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("token for an unknown user: %v", err)
	}
	for tok, owner := range map[string]string{a1: "alice", a2: "alice", b1: "bob"} {
		if !tokenShape.MatchString(tok) {
			t.Errorf("token %q has not the shape ahvfs_<16 hex>_<43 base64url>", tok)
		}
		u, rec, ok := us.VerifyToken(tok)
		if !ok || u.Name != owner || !strings.Contains(tok, rec.ID) {
			t.Errorf("token of %s verifies as %v %v %v", owner, u, rec, ok)
		}
	}
	if a1 == a2 {
		t.Fatal("two tokens are equal")
	}
	b, _ := us.Marshal()
	for _, tok := range []string{a1, a2, b1} {
		if strings.Contains(string(b), tok[23:]) {
			t.Fatalf("the users file holds a token's secret")
		}
	}
	// Tampering: every single-character change, truncation, extension.
	for _, bad := range tamper(a1) {
		if _, _, ok := us.VerifyToken(bad); ok {
			t.Errorf("tampered token %q verifies", bad)
		}
	}
	// Another user's id with this secret, and the reverse.
	_, id1, _ := strings.Cut(a1[:22], "_")
	_, idB, _ := strings.Cut(b1[:22], "_")
	if _, _, ok := us.VerifyToken(strings.Replace(a1, id1, idB, 1)); ok {
		t.Error("alice's secret under bob's token id verifies")
	}
	if _, err := us.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{a1, a2} {
		if _, _, ok := us.VerifyToken(tok); ok {
			t.Error("a removed user's token verifies")
		}
	}
	if u, _, ok := us.VerifyToken(b1); !ok || u.Name != "bob" {
		t.Error("bob's token stopped working when alice was removed")
	}
}

// tamper returns variants of tok that differ from it by one character,
// by length, or by case.
func tamper(tok string) []string {
	var out []string
	for i := range len(tok) {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		out = append(out, string(b))
	}
	return append(out, tok[:len(tok)-1], tok+"A", strings.ToUpper(tok), " "+tok, "", "ahvfs_")
}

func TestParseToken(t *testing.T) {
	tok, rec := auth.NewToken("x", time.Now())
	id, secret, err := auth.ParseToken(tok)
	if err != nil || id != rec.ID || "ahvfs_"+id+"_"+secret != tok {
		t.Fatalf("ParseToken(%q) = %q %q %v", tok, id, secret, err)
	}
	for _, bad := range []string{"", "Bearer " + tok, tok + "=", strings.Replace(tok, "ahvfs_", "ahvfz_", 1), tok[:22] + "-" + tok[23:]} {
		if _, _, err := auth.ParseToken(bad); !errors.Is(err, auth.ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v", bad, err)
		}
	}
}

// TestRevokeToken: one token revoked stops verifying at once; the user's
// other tokens go on; an unknown ID is an error.
func TestRevokeToken(t *testing.T) {
	us := &auth.Users{Version: auth.UsersVersion}
	u, err := auth.NewUser("ops", auth.RoleOperator, nil, []byte("a long enough password"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := us.Add(u); err != nil {
		t.Fatal(err)
	}
	a, _ := us.AddToken("ops", "a", time.Now())
	b, _ := us.AddToken("ops", "b", time.Now())
	_, tb, _ := us.VerifyToken(b)
	if err := us.RevokeToken("ops", tb.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := us.VerifyToken(b); ok {
		t.Fatal("a revoked token verifies")
	}
	if _, _, ok := us.VerifyToken(a); !ok {
		t.Fatal("the other token stopped verifying")
	}
	if err := us.RevokeToken("ops", tb.ID, time.Now()); !errors.Is(err, auth.ErrBadToken) {
		t.Fatalf("revoking it again: %v", err)
	}
	if err := us.RevokeToken("nobody", tb.ID, time.Now()); !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("revoking a token of nobody: %v", err)
	}
}
