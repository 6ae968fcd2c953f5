// Package webhooks verifies the signature of a webhook request from Hookline
// (Standard Webhooks), with the Go standard library only.
package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Tolerance is how far webhook-timestamp may be from the receiver's clock.
const Tolerance = 5 * time.Minute

// ErrNoMatchingSignature means that no v1 signature matches the body.
var ErrNoMatchingSignature = errors.New("no v1 signature matches the body")

// Verify checks the headers webhook-id, webhook-timestamp and
// webhook-signature of a request against its raw body. The secret is
// "whsec_" followed by the base64 of the key.
func Verify(secret string, header http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("invalid signing secret: %w", err)
	}

	id := header.Get("webhook-id")
	timestamp := header.Get("webhook-timestamp")
	sentAt, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || sentAt < 0 {
		return errors.New("webhook-timestamp is not a Unix time in seconds")
	}
	if age := now.Sub(time.Unix(sentAt, 0)); age > Tolerance || age < -Tolerance {
		return errors.New("webhook-timestamp is outside the 5-minute tolerance")
	}

	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	expected := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))

	// During secret rotation the header carries several signatures.
	for _, entry := range strings.Split(header.Get("webhook-signature"), " ") {
		version, signature, found := strings.Cut(entry, ",")
		// hmac.Equal takes the same time wherever the bytes differ.
		if found && version == "v1" && hmac.Equal([]byte(signature), expected) {
			return nil
		}
	}
	return ErrNoMatchingSignature
}
