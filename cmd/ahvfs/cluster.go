package main

import (
	"context"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/urfave/cli/v2"
)

// clusterFlags are the flags of every command that talks to Prism (cli.md
// "Cluster"). There is deliberately no password flag: the password comes
// from --password-file, $AHVFS_PASSWORD_FILE or $AHVFS_PASSWORD.
func clusterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "prism", Usage: "Prism address `HOST[:PORT]` (port 9440 by default)", EnvVars: []string{"AHVFS_PRISM"}},
		&cli.StringFlag{Name: "user", Value: "admin", Usage: "Prism user", EnvVars: []string{"AHVFS_USER"}},
		&cli.StringFlag{Name: "password-file", Usage: "`FILE` holding the Prism password (or $AHVFS_PASSWORD)", EnvVars: []string{nutanix.EnvPasswordFile}},
		&cli.StringFlag{Name: "ca-cert", Usage: "PEM `FILE` of the CA that signed the Prism certificate", EnvVars: []string{"AHVFS_CA_CERT"}},
		&cli.BoolFlag{Name: "insecure", Usage: "do not verify the Prism TLS certificate (lab only; warns on every run)"},
		&cli.StringFlag{Name: "api", Value: "auto", Usage: "Prism API: auto, v4 or v3"},
	}
}

// clusterOptions builds the client options from the cluster flags. An
// invalid combination is a usage error that lists every problem.
func clusterOptions(c *cli.Context, env *cliEnv) (nutanix.Options, error) {
	api, err := nutanix.ParseAPIVersion(c.String("api"))
	if err != nil {
		return nutanix.Options{}, usagef("--api: %v", err)
	}
	o := nutanix.Options{
		Endpoint:     c.String("prism"),
		User:         c.String("user"),
		PasswordFile: c.String("password-file"),
		CACertFile:   c.String("ca-cert"),
		Insecure:     c.Bool("insecure"),
		API:          api,
		Logger:       env.Log,
	}
	if err := o.Validate(); err != nil {
		return o, usagef("%v", err)
	}
	return o, nil
}

// siteFromFlags connects to Prism and returns, with the client, the
// connector that serves clients of the other API families (for objects
// journaled through them, and VM chains built through them). Close both.
func siteFromFlags(ctx context.Context, c *cli.Context, env *cliEnv) (*nutanix.Client, *clusterjob.Connector, error) {
	o, err := clusterOptions(c, env)
	if err != nil {
		return nil, nil, err
	}
	cl, err := nutanix.Connect(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return cl, clusterjob.NewConnector(o, cl), nil
}

// repoJournal is the journal of temporary cluster objects of a
// repository: REPO/journal.
func repoJournal(r *engine.Repository) (*clusterjob.Journal, error) {
	return clusterjob.RepositoryJournal(r)
}
