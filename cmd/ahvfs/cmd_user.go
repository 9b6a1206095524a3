package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

// ahvfs user: the web console's users, in the users file the daemon reads
// (console/auth). Passwords come from a file or stdin, never argv.

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "user",
			Usage: "console users: add, passwd, del, token, revoke, list",
			Description: "Users of the web console and its API live in the users file (--users, default\n" +
				auth.DefaultUsersFile + ", mode 0600). The console reads it again when it changes: a user\n" +
				"removed or a password changed ends that user's browser sessions at once, no restart needed.\n" +
				"Roles: admin (everything, users and configuration included), operator (view, browse,\n" +
				"download, back up now, restore) and restore-files (view, browse and download guest files).\n" +
				"Scopes limit the VMs a user sees: name:GLOB (or a bare GLOB), uuid:UUID,\n" +
				"category:KEY:VALUE; a user without scopes sees every VM.",
			Subcommands: []*cli.Command{
				{
					Name:      "add",
					Usage:     "add a console user",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						usersFileFlag(),
						&cli.StringFlag{Name: "role", Usage: "the user's `ROLE`: admin, operator or restore-files"},
						&cli.StringSliceFlag{Name: "scope", Usage: "limit the VMs the user sees to those a `SELECTOR` matches (name:GLOB, uuid:UUID, category:KEY:VALUE; repeat the flag or separate with commas for several); none: every VM"},
						consolePasswordFlag(),
					},
					Action: runUserAdd,
				},
				{
					Name:      "passwd",
					Usage:     "change a console user's password (its browser sessions end)",
					ArgsUsage: "NAME",
					Flags:     []cli.Flag{usersFileFlag(), consolePasswordFlag()},
					Action:    runUserPasswd,
				},
				{
					Name:      "del",
					Usage:     "remove a console user and its API tokens",
					ArgsUsage: "NAME",
					Flags:     []cli.Flag{usersFileFlag()},
					Action:    runUserDel,
				},
				{
					Name:  "token",
					Usage: "give a console user a new API token and print it (once)",
					Description: "Prints the token alone on stdout: it cannot be shown again, the users file keeps\n" +
						"only its hash. Scripts send it as 'Authorization: Bearer TOKEN' to /api/v1/...;\n" +
						"it acts with the user's role and scopes, and dies with the user. With --for or\n" +
						"--until it stops working then; without, it works until revoked.",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{
						usersFileFlag(),
						&cli.StringFlag{Name: "label", Usage: "what the token is for (`TEXT`, shown by list --json)"},
						&cli.StringFlag{Name: "until", Usage: "the token stops working at `TIME` (RFC 3339)"},
						&cli.StringFlag{Name: "for", Usage: "the token stops working after `SPAN` from now (90d, 12w, 1y)"},
					},
					Action: runUserToken,
				},
				{
					Name:      "revoke",
					Usage:     "remove one API token of a console user (its ID as 'ahvfs user list --json' shows it)",
					ArgsUsage: "NAME ID",
					Flags:     []cli.Flag{usersFileFlag()},
					Action:    runUserRevoke,
				},
				{
					Name:      "list",
					Usage:     "list the console users: name, role, scopes, API tokens, last change",
					ArgsUsage: " ",
					Flags:     []cli.Flag{usersFileFlag()},
					Action:    runUserList,
				},
			},
		}
	})
}

func usersFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "users", Value: auth.DefaultUsersFile, Usage: "`FILE` of the console's users (mode 0600)", EnvVars: []string{"AHVFS_USERS_FILE"}}
}

// consolePasswordFlag is the file of a console user's new password. It is
// not --password-file's concept (Prism's password, $AHVFS_PASSWORD_FILE):
// a Prism password in the environment must never become a console user's.
// cli.md's --password-file is accepted as an alias.
func consolePasswordFlag() cli.Flag {
	return &cli.StringFlag{Name: "console-password-file", Aliases: []string{"password-file"},
		Usage: "`FILE` holding the user's new console password (at least 12 characters), - for stdin"}
}

// userCmd is the name of the running command, "user add", for messages.
func userCmd(c *cli.Context) string { return strings.TrimPrefix(commandPath(c), "ahvfs ") }

// userName is the command's one argument, checked.
func userName(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s: give one user NAME", userCmd(c))
	}
	name := c.Args().First()
	if err := auth.ValidateName(name); err != nil {
		return "", usagef("%s: %v", userCmd(c), err)
	}
	return name, nil
}

// readConsolePassword reads the new password from --password-file (or
// stdin for -), without its line end, and checks its length.
func readConsolePassword(c *cli.Context, env *cliEnv) ([]byte, error) {
	path := c.String("console-password-file")
	if path == "" {
		return nil, usagef("%s: give the password in a file with --password-file FILE (- reads stdin)", userCmd(c))
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(env.Stdin, 64<<10))
		path = "on stdin"
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read password file: %w", userCmd(c), err)
	}
	pw, err := engine.ParsePassword(b, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", userCmd(c), err)
	}
	if err := auth.CheckPasswordStrength(pw); err != nil {
		return nil, fmt.Errorf("%s: %w", userCmd(c), err)
	}
	return pw, nil
}

// userJSON is a user as list --json and add --json print it: no hash, no
// token secret.
type userJSON struct {
	Name    string      `json:"name"`
	Role    auth.Role   `json:"role"`
	Scopes  []string    `json:"scopes"`
	Tokens  []tokenJSON `json:"tokens"`
	Created time.Time   `json:"created"`
	Changed time.Time   `json:"changed"`
}

type tokenJSON struct {
	ID      string    `json:"id"`
	Label   string    `json:"label,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

func toUserJSON(u *auth.User) userJSON {
	j := userJSON{Name: u.Name, Role: u.Role, Scopes: scopeStrings(u), Tokens: []tokenJSON{}, Created: u.Created, Changed: u.Changed}
	for _, t := range u.Tokens {
		j.Tokens = append(j.Tokens, tokenJSON{ID: t.ID, Label: t.Label, Created: t.Created, Expires: t.Expires})
	}
	return j
}

func scopeStrings(u *auth.User) []string {
	out := []string{}
	for _, s := range u.Scopes {
		out = append(out, s.String())
	}
	return out
}

// scopeText is the scopes for people.
func scopeText(u *auth.User) string {
	if len(u.Scopes) == 0 {
		return "every VM"
	}
	return strings.Join(scopeStrings(u), ",")
}

func runUserAdd(c *cli.Context) error {
	env := envFrom(c)
	name, err := userName(c)
	if err != nil {
		return err
	}
	if c.String("role") == "" {
		return usagef("user add: give the user's --role (admin, operator or restore-files)")
	}
	role, err := auth.ParseRole(c.String("role"))
	if err != nil {
		return usagef("user add: --role: %v", err)
	}
	var scopes []auth.Selector
	for _, s := range c.StringSlice("scope") {
		sel, err := auth.ParseScope(s)
		if err != nil {
			return usagef("user add: --scope: %v", err)
		}
		scopes = append(scopes, sel)
	}
	pw, err := readConsolePassword(c, env)
	if err != nil {
		return err
	}
	u, err := auth.NewUser(name, role, scopes, pw, time.Now())
	if err != nil {
		return err
	}
	path := c.String("users")
	if err := auth.Update(c.Context, path, func(us *auth.Users) error { return us.Add(u) }); err != nil {
		if errors.Is(err, auth.ErrUserExists) {
			return fmt.Errorf("user add: %w in %s (change its password with 'ahvfs user passwd')", err, path)
		}
		return fmt.Errorf("user add: %w", err)
	}
	if env.JSON {
		return writeJSON(env.Stdout, toUserJSON(&u))
	}
	fmt.Fprintf(env.Stdout, "added user %s (role %s, sees %s) to %s\n", u.Name, u.Role, scopeText(&u), path)
	return nil
}

func runUserPasswd(c *cli.Context) error {
	env := envFrom(c)
	name, err := userName(c)
	if err != nil {
		return err
	}
	pw, err := readConsolePassword(c, env)
	if err != nil {
		return err
	}
	path := c.String("users")
	var changed auth.User
	err = auth.Update(c.Context, path, func(us *auth.Users) error {
		if err := us.SetPassword(name, pw, time.Now()); err != nil {
			return err
		}
		changed = *us.Lookup(name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("user passwd: %w", err)
	}
	if env.JSON {
		return writeJSON(env.Stdout, toUserJSON(&changed))
	}
	fmt.Fprintf(env.Stdout, "changed the password of %s: its browser sessions end; its %d API token(s) stay\n", name, len(changed.Tokens))
	return nil
}

func runUserDel(c *cli.Context) error {
	env := envFrom(c)
	name, err := userName(c)
	if err != nil {
		return err
	}
	path := c.String("users")
	var removed auth.User
	err = auth.Update(c.Context, path, func(us *auth.Users) error {
		var err error
		removed, err = us.Remove(name)
		return err
	})
	if err != nil {
		return fmt.Errorf("user del: %w", err)
	}
	if env.JSON {
		return writeJSON(env.Stdout, toUserJSON(&removed))
	}
	fmt.Fprintf(env.Stdout, "removed user %s and its %d API token(s) from %s\n", name, len(removed.Tokens), path)
	return nil
}

func runUserToken(c *cli.Context) error {
	env := envFrom(c)
	name, err := userName(c)
	if err != nil {
		return err
	}
	label := c.String("label")
	path := c.String("users")
	expiry, err := lockRule(c, "until", "for")
	if err != nil {
		return err
	}
	now := time.Now()
	var expires time.Time
	if expiry != nil {
		expires = expiry(now)
	}
	var text string
	var tok auth.Token
	err = auth.Update(c.Context, path, func(us *auth.Users) error {
		if us.Lookup(name) == nil {
			return fmt.Errorf("user %q: %w in %s", name, auth.ErrNoUser, path)
		}
		var err error
		if text, err = us.AddTokenUntil(name, label, now, expires); err != nil {
			return err
		}
		u := us.Lookup(name)
		tok = u.Tokens[len(u.Tokens)-1]
		return nil
	})
	if err != nil {
		return fmt.Errorf("user token: %w", err)
	}
	if env.JSON {
		return writeJSON(env.Stdout, struct {
			User    string    `json:"user"`
			ID      string    `json:"id"`
			Label   string    `json:"label,omitempty"`
			Created time.Time `json:"created"`
			Expires time.Time `json:"expires,omitzero"`
			Token   string    `json:"token"`
		}{name, tok.ID, tok.Label, tok.Created, tok.Expires, text})
	}
	fmt.Fprintln(env.Stdout, text)
	until := "until revoked"
	if !tok.Expires.IsZero() {
		until = "until " + tok.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(env.Stderr, "ahvfs: API token %s for %s, %s: store it now, it cannot be shown again\n", tok.ID, name, until)
	return nil
}

func runUserRevoke(c *cli.Context) error {
	env := envFrom(c)
	if c.NArg() != 2 {
		return usagef("user revoke: want NAME and the token's ID ('ahvfs user list --json' shows the IDs)")
	}
	name, id := c.Args().Get(0), c.Args().Get(1)
	err := auth.Update(c.Context, c.String("users"), func(us *auth.Users) error {
		return us.RevokeToken(name, id, time.Now())
	})
	if err != nil {
		return fmt.Errorf("user revoke: %w", err)
	}
	fmt.Fprintf(env.Stdout, "revoked API token %s of %s\n", id, name)
	return nil
}

func runUserList(c *cli.Context) error {
	env := envFrom(c)
	if c.NArg() > 0 {
		return usagef("user list: unexpected argument %q", c.Args().First())
	}
	us, err := auth.Load(c.Context, c.String("users"))
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	if env.JSON {
		out := []userJSON{}
		for i := range us.Users {
			out = append(out, toUserJSON(&us.Users[i]))
		}
		return writeJSON(env.Stdout, out)
	}
	if len(us.Users) == 0 {
		fmt.Fprintln(env.Stdout, "no console user (add one with 'ahvfs user add')")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSCOPES\tTOKENS\tCHANGED")
	for i := range us.Users {
		u := &us.Users[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", u.Name, u.Role, scopeText(u), len(u.Tokens), u.Changed.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
