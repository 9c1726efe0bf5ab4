package providertest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kvmpki/kvmpki/provider"
)

// Concurrency sizes: concurrencyWorkers goroutines issue and revoke
// concurrencyRounds certificates each.
const (
	concurrencyWorkers = 8
	concurrencyRounds  = 4
)

func (s *suite) testConcurrency(t *testing.T, p provider.Provider) {
	s.run(t, "IssueRevoke", func(t *testing.T) {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			serials = make(map[string]bool)
			errs    []error
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		// The requests are made up front, as require must not be called
		// from other goroutines.
		reqs := make([]*provider.IssueRequest, concurrencyWorkers*concurrencyRounds)
		for i := range reqs {
			reqs[i] = &provider.IssueRequest{
				DNSNames:    []string{s.name("concurrent")},
				IPAddresses: s.ips,
				Role:        s.anyRole(),
			}
			reqs[i].CSR = s.csrFor(t, newECDSAKey(t), reqs[i])
		}
		ctx := t.Context()
		for w := range concurrencyWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range concurrencyRounds {
					res, err := p.Issue(ctx, reqs[w*concurrencyRounds+i])
					if err != nil {
						fail(fmt.Errorf("worker %d: Issue: %w", w, err))
						continue
					}
					if res == nil || res.Certificate == nil {
						fail(fmt.Errorf("worker %d: Issue returned no certificate", w))
						continue
					}
					serial := res.Certificate.SerialNumber
					mu.Lock()
					if serials[serial.Text(16)] {
						errs = append(errs, fmt.Errorf("worker %d: serial %s issued twice", w, provider.FormatSerial(serial)))
					}
					serials[serial.Text(16)] = true
					mu.Unlock()
					if err := p.Revoke(ctx, &provider.RevokeRequest{Serial: serial, Certificate: res.Certificate, Reason: provider.ReasonCessationOfOperation}); err != nil {
						fail(fmt.Errorf("worker %d: Revoke: %w", w, err))
					}
					// Readers run alongside.
					if _, err := p.CACertificates(ctx); err != nil {
						fail(fmt.Errorf("worker %d: CACertificates: %w", w, err))
					}
					if _, ok := crlCapable(p); ok && i == 0 {
						if _, err := provider.CRLs(ctx, p); err != nil && !errors.Is(err, provider.ErrRetryLater) {
							fail(fmt.Errorf("worker %d: CRLs: %w", w, err))
						}
					}
					if inv, ok := p.(provider.Inventory); ok {
						if _, err := inv.LookupCertificate(ctx, serial); err != nil {
							fail(fmt.Errorf("worker %d: LookupCertificate: %w", w, err))
						}
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			assert.NoError(t, err)
		}
		assert.Len(t, serials, concurrencyWorkers*concurrencyRounds, "distinct serials")
	})
}
