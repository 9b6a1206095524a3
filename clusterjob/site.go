package clusterjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Site is one Prism endpoint as configuration files name it: the daemon's
// [[cluster]] tables and a recovery plan's. The keys are those of the
// cluster flags of `ahvfs backup`.
type Site struct {
	Name         string `toml:"name"`
	Prism        string `toml:"prism"`
	User         string `toml:"user"`
	PasswordFile string `toml:"password_file"`
	CACert       string `toml:"ca_cert"`
	Insecure     bool   `toml:"insecure"`
	API          string `toml:"api"`
	// ISCSIPort overrides the Data Services IP's port (tests, NAT).
	ISCSIPort      int    `toml:"iscsi_port"`
	InitiatorIQN   string `toml:"initiator_iqn"`
	CHAPUser       string `toml:"chap_user"`
	CHAPSecretFile string `toml:"chap_secret_file"`
}

// Options are the Prism client options of the site.
func (s Site) Options(log *slog.Logger) (nutanix.Options, error) {
	api, err := nutanix.ParseAPIVersion(s.API)
	if err != nil {
		return nutanix.Options{}, fmt.Errorf("api: %w", err)
	}
	return nutanix.Options{Endpoint: s.Prism, User: s.User, PasswordFile: s.PasswordFile, CACertFile: s.CACert,
		Insecure: s.Insecure, API: api, Logger: log}, nil
}

// Check returns every problem of the site's keys (files are read).
func (s Site) Check() []error {
	var errs []error
	o, err := s.Options(nil)
	if err != nil {
		errs = append(errs, err)
	} else if err := o.Validate(); err != nil {
		errs = append(errs, err)
	}
	if (s.CHAPUser == "") != (s.CHAPSecretFile == "") {
		errs = append(errs, errors.New("chap_user and chap_secret_file go together"))
	}
	if s.CHAPSecretFile != "" {
		if _, err := os.Stat(s.CHAPSecretFile); err != nil {
			errs = append(errs, fmt.Errorf("chap_secret_file: %w", err))
		}
	}
	return errs
}

// CHAP reads the site's iSCSI CHAP credentials (none when not set).
func (s Site) CHAP() (iscsi.CHAP, error) {
	if s.CHAPUser == "" {
		return iscsi.CHAP{}, nil
	}
	sec, err := os.ReadFile(s.CHAPSecretFile)
	if err != nil {
		return iscsi.CHAP{}, fmt.Errorf("cluster %s: CHAP secret: %w", s.Name, err)
	}
	return iscsi.CHAP{User: s.CHAPUser, Secret: strings.TrimSpace(string(sec))}, nil
}

// Connect connects to the site and returns its client and the connector
// for the other API families (close both). tune, when set, adjusts the
// client options (tests).
func (s Site) Connect(ctx context.Context, log *slog.Logger, tune func(*nutanix.Options)) (*nutanix.Client, *Connector, error) {
	o, err := s.Options(log)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", s.Name, err)
	}
	if tune != nil {
		tune(&o)
	}
	cl, err := nutanix.Connect(ctx, o)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", s.Name, err)
	}
	return cl, NewConnector(o, cl), nil
}
