package ca

import (
	"errors"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// Sentinel errors. The certificate conditions are the values every
// kvmpki package uses (provider re-exports the same ones), so
// errors.Is(err, ca.ErrRevoked) holds for a provider's refusal too.
var (
	ErrRevoked           = pkicore.ErrRevoked
	ErrExpired           = pkicore.ErrExpired
	ErrUnknownAuthority  = pkicore.ErrUnknownAuthority
	ErrNoCertificate     = pkicore.ErrNoPeerCertificate
	ErrIncompatibleUsage = pkicore.ErrIncompatibleUsage
	ErrNameMismatch      = pkicore.ErrNameMismatch
	ErrNotFound          = pkicore.ErrNotFound
	ErrInvalidRequest    = pkicore.ErrInvalidRequest

	// ErrManagementName means an agent asked for, or a peer lacked, the
	// management marker name (Settings.ManagementSAN): an agent's
	// request naming it is refused so that no agent can pose as a
	// management server, and the cluster port refuses a peer whose
	// certificate does not carry it.
	ErrManagementName = errors.New("ca: management marker name")

	// ErrIdentityMismatch means a client's certificate does not name the
	// address it connects from, under AgentServerConfig.RequireSourceIP.
	ErrIdentityMismatch = errors.New("ca: certificate does not name the client's address")

	// ErrClosed means the Manager was closed.
	ErrClosed = errors.New("ca: manager closed")

	// ErrProvisionBusy means a host is being provisioned already, by
	// another call of the same Manager (Manager.Provision): retry later.
	ErrProvisionBusy = errors.New("ca: the host is being provisioned already")

	// ErrNoCredentials means an agent's certificate, key or CA file is
	// missing or unusable: an agent never falls back to trusting any
	// server.
	ErrNoCredentials = errors.New("ca: agent credentials missing or unusable")
)
