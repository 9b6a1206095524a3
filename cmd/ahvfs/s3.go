package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/urfave/cli/v2"
)

// Repositories on S3-compatible object storage (cli.md, "Object storage"):
// --repo s3://BUCKET/PREFIX with --s3-endpoint URL; credentials from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (AWS_REGION) or
// --s3-credentials-file, never from the command line; this host's cache
// under --cache-dir.

// s3Flags are accepted by every command (they only matter with an s3://
// repository).
func s3Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "s3-endpoint", Usage: "`URL` of the S3-compatible store of an s3:// repository (https://, or http:// on a trusted network)", EnvVars: []string{"AHVFS_S3_ENDPOINT"}},
		&cli.StringFlag{Name: "s3-ca-cert", Usage: "PEM `FILE` of the CA that signed the store's certificate (default: the system's)", EnvVars: []string{"AHVFS_S3_CA_CERT"}},
		&cli.StringFlag{Name: "s3-credentials-file", Usage: "`FILE` with the S3 access key and secret (AWS credentials format, or AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY= lines); default: those environment variables", EnvVars: []string{"AHVFS_S3_CREDENTIALS_FILE"}},
		&cli.StringFlag{Name: "cache-dir", Usage: "`DIR` of this host's caches of s3:// repositories, rebuilt when deleted (default $XDG_CACHE_HOME/ahvfs, else ~/.cache/ahvfs)", EnvVars: []string{"AHVFS_CACHE_DIR"}},
		newSizeFlag("cache-blocks", "0", "also keep up to `SIZE` of the pack blocks sequential readers fetch from an s3:// repository on disk under --cache-dir, for repeated reads (mount sessions); 0: memory only (writing them costs a full-disk stream about a fifth of its speed here)"),
		&cli.StringFlag{Name: "state-dir", Usage: "`DIR` of this host's journals of cluster objects for s3:// repositories, to keep (default $XDG_STATE_HOME/ahvfs, else ~/.local/state/ahvfs)", EnvVars: []string{"AHVFS_STATE_DIR"}},
	}
}

// isS3Repo reports whether --repo names object storage.
func isS3Repo(c *cli.Context) bool { return backend.IsS3URL(c.String("repo")) }

// openS3Backend connects to the bucket of an s3:// --repo. create makes
// the bucket when it is missing (init), with object lock when lock is set.
func openS3Backend(ctx context.Context, c *cli.Context, create, lock bool) (*backend.S3, error) {
	bucket, prefix, err := backend.ParseS3URL(c.String("repo"))
	if err != nil {
		return nil, usagef("--repo: %v", err)
	}
	endpoint := c.String("s3-endpoint")
	if endpoint == "" {
		return nil, usagef("an s3:// repository needs --s3-endpoint URL (or AHVFS_S3_ENDPOINT)")
	}
	ak, sk, region, err := s3Credentials(ctx, c.String("s3-credentials-file"))
	if err != nil {
		return nil, err
	}
	o := backend.S3Options{Endpoint: endpoint, Bucket: bucket, Prefix: prefix, Region: region,
		AccessKeyID: ak, SecretAccessKey: sk, CreateBucket: create, ObjectLock: lock}
	if n := flagSize(c, "cache-blocks"); n > 0 {
		base, err := cacheBase(c)
		if err != nil {
			return nil, err
		}
		o.BlockCacheDir, o.BlockCacheBytes = filepath.Join(base, "blocks"), n
	}
	if f := c.String("s3-ca-cert"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--s3-ca-cert: %w", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--s3-ca-cert %s: no PEM certificate in it", f)
		}
	}
	return backend.OpenS3(ctx, o)
}

// s3Credentials reads the access key, secret and region from file (when
// given) or the environment. The secret never leaves this function but in
// the backend's signer.
func s3Credentials(ctx context.Context, file string) (ak, sk, region string, err error) {
	region = os.Getenv("AWS_REGION")
	if file == "" {
		ak, sk = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if ak == "" || sk == "" {
			return "", "", "", usagef("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --s3-credentials-file FILE")
		}
		return ak, sk, region, nil
	}
	b, err := readFileContext(ctx, file, 64<<10)
	if err != nil {
		return "", "", "", fmt.Errorf("read S3 credentials file: %w", err)
	}
	vals := parseCredentials(b)
	ak, sk = vals["aws_access_key_id"], vals["aws_secret_access_key"]
	if r := vals["region"]; r != "" {
		region = r
	}
	if ak == "" || sk == "" {
		return "", "", "", fmt.Errorf("S3 credentials file %s: want aws_access_key_id and aws_secret_access_key (AWS credentials format) or AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY= lines", file)
	}
	return ak, sk, region, nil
}

// parseCredentials reads KEY = VALUE lines: the [default] section of an
// AWS credentials file, else its first section, or KEY=VALUE shell lines
// without a section. Keys come back in lower case, with AWS_REGION and
// AWS_DEFAULT_REGION as region.
func parseCredentials(b []byte) map[string]string {
	sections := map[string]map[string]string{}
	var order []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "aws_region" || k == "aws_default_region" {
			k = "region"
		}
		if sections[section] == nil {
			sections[section] = map[string]string{}
			order = append(order, section)
		}
		sections[section][k] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	if m, ok := sections["default"]; ok {
		return m
	}
	if len(order) == 0 {
		return map[string]string{}
	}
	return sections[order[0]]
}

// stateBase is --state-dir, else $XDG_STATE_HOME/ahvfs, else
// ~/.local/state/ahvfs.
func stateBase(c *cli.Context) (string, error) {
	if d := c.String("state-dir"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "ahvfs"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", usagef("no state directory: give --state-dir DIR (or set AHVFS_STATE_DIR)")
	}
	return filepath.Join(home, ".local", "state", "ahvfs"), nil
}

// cacheBase is --cache-dir, else $XDG_CACHE_HOME/ahvfs, else
// ~/.cache/ahvfs.
func cacheBase(c *cli.Context) (string, error) {
	if d := c.String("cache-dir"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "ahvfs"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", usagef("no cache directory: give --cache-dir DIR (or set AHVFS_CACHE_DIR)")
	}
	return filepath.Join(home, ".cache", "ahvfs"), nil
}
