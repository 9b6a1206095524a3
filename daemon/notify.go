package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Event is the JSON body of a webhook POST.
type Event struct {
	// Event is job_failed or rpo_breach.
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	Host  string    `json:"host"`
	// Job is the failed job's record (job_failed).
	Job *engine.Job `json:"job,omitempty"`
	// VM, Policy, NewestRestorePoint and RPOSeconds describe a breach.
	VM                 string     `json:"vm,omitempty"`
	Policy             string     `json:"policy,omitempty"`
	NewestRestorePoint *time.Time `json:"newest_restore_point,omitempty"`
	RPOSeconds         float64    `json:"rpo_seconds,omitempty"`
}

// checkRPO fires an rpo_breach event for each VM whose newest restore
// point became older than its policy's RPO since the last check.
func (d *Daemon) checkRPO(now time.Time) {
	cfg := d.config()
	for _, k := range d.stats.vmKeys() {
		p := cfg.policy(k.policy)
		if p == nil {
			continue
		}
		newest := d.stats.newestOf(k.vm)
		ok := compliant(newest, p.RPO.Duration, now)
		d.mu.Lock()
		was, seen := d.breached[k]
		d.breached[k] = !ok
		d.mu.Unlock()
		if ok || (seen && was) {
			continue
		}
		ev := Event{Event: "rpo_breach", VM: k.vm, Policy: k.policy, RPOSeconds: p.RPO.Seconds()}
		if !newest.IsZero() {
			ev.NewestRestorePoint = &newest
		}
		d.log.Warn("RPO breached", "vm", k.vm, "policy", k.policy, "newest_restore_point", newest, "rpo", p.RPO.Duration)
		d.notify(context.Background(), ev)
	}
}

// notify POSTs an event to the webhook, when one is configured. Failures
// are logged; they never fail a job.
func (d *Daemon) notify(ctx context.Context, ev Event) {
	wh := d.config().Webhook
	if wh.URL == "" {
		return
	}
	ev.Time, ev.Host = d.clock.Now().UTC(), d.host
	body, err := json.Marshal(ev)
	if err != nil {
		d.log.Error("webhook: encode event", "err", err)
		return
	}
	go func() {
		if err := post(ctx, wh, body); err != nil {
			d.log.Error("webhook not delivered", "event", ev.Event, "to", redactURL(wh.URL), "err", err)
		}
	}()
}

func post(ctx context.Context, wh WebhookConfig, body []byte) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if wh.CACert != "" {
		pem, err := os.ReadFile(wh.CACert)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no certificate", wh.CACert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wh.Timeout.Duration)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if ue, ok := err.(*url.Error); ok {
		err = ue.Err // without the URL, whose path may be a token
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// redactURL keeps a webhook URL's scheme and host: chat services put the
// secret in the path.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
