// Package notify tells people about backups: an e-mail over SMTP and a JSON
// POST to a webhook whose body is also a Slack incoming-webhook message.
// Settings come from the environment (a Secret), never from annotations. A
// notification that fails is reported to the caller to log and count; it
// never fails a backup.
package notify

import (
	"remora.dev/remora/internal/certpool"

	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config says where notifications go.
type Config struct {
	WebhookURL string
	SMTP       SMTP
	OnSuccess  bool // also notify successful backups
}

// SMTP is an e-mail server. Port 465 is TLS from the start; other ports use
// STARTTLS when the server offers it, and refuse to send a password without
// TLS.
type SMTP struct {
	Host, Port         string
	Username, Password string
	From               string
	To                 []string
	CAFile             string // a private CA for the server's certificate
}

// FromEnv reads REMORA_NOTIFY_WEBHOOK_URL, REMORA_NOTIFY_ON_SUCCESS and
// REMORA_SMTP_HOST, _PORT, _USERNAME, _PASSWORD, _FROM, _TO (comma list),
// _CA_FILE.
func FromEnv() (Config, error) {
	c := Config{WebhookURL: os.Getenv("REMORA_NOTIFY_WEBHOOK_URL")}
	if v := os.Getenv("REMORA_NOTIFY_ON_SUCCESS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("REMORA_NOTIFY_ON_SUCCESS=%q: want true or false", v)
		}
		c.OnSuccess = b
	}
	s := SMTP{Host: os.Getenv("REMORA_SMTP_HOST"), Port: os.Getenv("REMORA_SMTP_PORT"), Username: os.Getenv("REMORA_SMTP_USERNAME"),
		Password: os.Getenv("REMORA_SMTP_PASSWORD"), From: os.Getenv("REMORA_SMTP_FROM"), CAFile: os.Getenv("REMORA_SMTP_CA_FILE")}
	for _, to := range strings.Split(os.Getenv("REMORA_SMTP_TO"), ",") {
		if to = strings.TrimSpace(to); to != "" {
			s.To = append(s.To, to)
		}
	}
	if s.Host != "" {
		if s.Port == "" {
			s.Port = "587"
		}
		if s.From == "" || len(s.To) == 0 {
			return c, errors.New("REMORA_SMTP_HOST is set: REMORA_SMTP_FROM and REMORA_SMTP_TO are needed too")
		}
		c.SMTP = s
	}
	return c, nil
}

// Secrets are the values that must never be printed.
func (c Config) Secrets() []string { return []string{c.SMTP.Password, c.WebhookURL} }

// Event is one backup's outcome.
type Event struct {
	Namespace string    `json:"namespace"`
	Workload  string    `json:"workload"`
	Pod       string    `json:"pod,omitempty"`
	Driver    string    `json:"driver"`
	OK        bool      `json:"ok"`
	Error     string    `json:"error,omitempty"`
	ID        string    `json:"id,omitempty"`
	Size      int64     `json:"size,omitempty"`
	Seconds   float64   `json:"duration_seconds"`
	Time      time.Time `json:"time"`
}

func (e Event) summary() string {
	if e.OK {
		return fmt.Sprintf("Remora: backup %s of %s/%s (%s) succeeded in %.0fs, %d bytes", e.ID, e.Namespace, e.Workload, e.Driver, e.Seconds, e.Size)
	}
	return fmt.Sprintf("Remora: backup of %s/%s (%s) FAILED after %.0fs: %s", e.Namespace, e.Workload, e.Driver, e.Seconds, e.Error)
}

// Wants reports whether ev should be sent.
func (c Config) Wants(ev Event) bool {
	return (c.WebhookURL != "" || c.SMTP.Host != "") && (!ev.OK || c.OnSuccess)
}

// Send sends ev to every configured channel and returns their errors.
func (c Config) Send(ctx context.Context, ev Event) []error {
	var errs []error
	if c.WebhookURL != "" {
		if err := c.webhook(ctx, ev); err != nil {
			errs = append(errs, fmt.Errorf("webhook: %w", err))
		}
	}
	if c.SMTP.Host != "" {
		if err := c.SMTP.send(ctx, ev); err != nil {
			errs = append(errs, fmt.Errorf("e-mail via %s: %w", net.JoinHostPort(c.SMTP.Host, c.SMTP.Port), err))
		}
	}
	return errs
}

// webhook POSTs {"text": summary, "remora": event}: a Slack incoming webhook
// shows the text; anything else gets the fields.
func (c Config) webhook(ctx context.Context, ev Event) error {
	body, _ := json.Marshal(map[string]any{"text": ev.summary(), "remora": ev})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad URL") // the URL may hold a token: do not quote it
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) {
			return fmt.Errorf("post: %v", uerr.Unwrap()) // without the URL
		}
		return errors.New("post failed")
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

func (s SMTP) send(ctx context.Context, ev Event) error {
	tlsConf := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pool, err := certpool.FromFile(s.CAFile)
		if err != nil {
			return err
		}
		tlsConf.RootCAs = pool
	}
	addr := net.JoinHostPort(s.Host, s.Port)
	d := &net.Dialer{Timeout: 15 * time.Second}
	var conn net.Conn
	var err error
	if s.Port == "465" {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("remora"); err != nil {
		return err
	}
	_, isTLS := conn.(*tls.Conn)
	if ok, _ := c.Extension("STARTTLS"); ok && !isTLS {
		if err := c.StartTLS(tlsConf); err != nil {
			return err
		}
		isTLS = true
	}
	if s.Username != "" {
		if !isTLS {
			return errors.New("the server offers no TLS; the password is not sent in the clear")
		}
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("login as %s: %v", s.Username, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return err
	}
	for _, to := range s.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	subject := ev.summary()
	if len(subject) > 150 {
		subject = subject[:150] + "..."
	}
	body, _ := json.MarshalIndent(ev, "", "  ")
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n\r\n%s\r\n",
		s.From, strings.Join(s.To, ", "), strings.ReplaceAll(subject, "\n", " "), ev.Time.Format(time.RFC1123Z), ev.summary(), body)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
