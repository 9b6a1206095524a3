package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/urfave/cli/v2"
)

// sourceFlag names the hypervisor a job works on when it is not the AHV
// cluster of --prism.
func sourceFlag() cli.Flag {
	return &cli.StringFlag{Name: "source", Usage: "an XCP-ng / XenServer pool `xapi://HOST[:PORT]` instead of --prism (user root by default; --password-file, --ca-cert and --insecure as for Prism)",
		EnvVars: []string{"AHVFS_SOURCE"}}
}

// xenEndpoint parses --source: the XAPI URL of an xapi:// source, "" when
// the flag is not given. prism://HOST is --prism's spelling and "" too.
func xenEndpoint(c *cli.Context) (string, error) {
	src := c.String("source")
	if src == "" {
		return "", nil
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return "", usagef("--source %q: want xapi://HOST[:PORT]", src)
	}
	switch u.Scheme {
	case "xapi":
		if c.String("prism") != "" {
			return "", usagef("--source xapi:// and --prism (or $AHVFS_PRISM) name two hypervisors: give one")
		}
		return "https://" + u.Host, nil
	case "prism":
		return "", usagef("--source prism://%s: use --prism %s", u.Host, u.Host)
	}
	return "", usagef("--source %q: want xapi://HOST[:PORT]", src)
}

// xenFromFlags connects to the pool --source names; nil without error
// when --source is not an XCP-ng pool.
func xenFromFlags(ctx context.Context, c *cli.Context, env *cliEnv) (*xapi.Client, error) {
	ep, err := xenEndpoint(c)
	if err != nil || ep == "" {
		return nil, err
	}
	user := c.String("user")
	if !c.IsSet("user") || user == "" {
		user = "root" // --user's default is Prism's admin
	}
	pw, err := xenPassword(ctx, c.String("password-file"))
	if err != nil {
		return nil, err
	}
	if c.Bool("insecure") {
		env.Log.Warn("TLS verification of the XCP-ng pool is off (--insecure): lab use only")
	}
	if api := c.String("api"); api != "" && api != "auto" {
		return nil, usagef("--api %s is Prism's; an XCP-ng pool speaks XAPI", api)
	}
	o := xapi.Options{URL: ep, User: user, Password: pw, CAFile: c.String("ca-cert"), Insecure: c.Bool("insecure"), Logger: env.Log}
	if err := o.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	xc, err := xapi.Connect(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to the XCP-ng pool %s: %w", ep, err)
	}
	return xc, nil
}

// xenPassword reads the pool password from file (--password-file or
// $AHVFS_PASSWORD_FILE), else $AHVFS_PASSWORD: never from the command line.
func xenPassword(ctx context.Context, file string) (string, error) {
	if file != "" {
		b, err := readFileContext(ctx, file, 64<<10)
		if err != nil {
			return "", fmt.Errorf("read the password file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		if pw = strings.TrimRight(pw, "\r"); pw == "" {
			return "", fmt.Errorf("password file %s is empty", file)
		}
		return pw, nil
	}
	if pw := os.Getenv(nutanix.EnvPassword); pw != "" {
		return pw, nil
	}
	return "", errors.New("no password: use --password-file, $" + nutanix.EnvPasswordFile + " or $" + nutanix.EnvPassword)
}
