package rootca

import (
	"context"
	"math/big"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca/internal/storecheck"
)

// Store errors beyond the provider sentinels (provider.ErrNotFound,
// provider.ErrAlreadyRevoked), which stores also return.
var (
	// ErrAuthorityExists is returned by Store.CreateAuthority when the
	// store already holds an authority, for instance because another
	// process created it first, and so by Create.
	ErrAuthorityExists = storecheck.ErrAuthorityExists
	// ErrDuplicateSerial is returned by Store.AddCertificate when the
	// serial is already recorded.
	ErrDuplicateSerial = storecheck.ErrDuplicateSerial
	// ErrStoreClosed is returned by a store used after Close.
	ErrStoreClosed = storecheck.ErrStoreClosed
)

// Authority is the CA's own material as a Store keeps it.
type Authority struct {
	// Certificates is the DER chain of the issuing CA: the issuing
	// certificate first, then its issuers up to the root.
	Certificates [][]byte
	// Key is the issuing CA's private key as an encrypted PKCS #8 PEM
	// block, or nil when the key lives outside the store (an HSM or KMS
	// signer passed in Options.Signer).
	Key []byte
}

// Revocation is one revoked certificate.
type Revocation struct {
	Serial    *big.Int
	RevokedAt time.Time
	Reason    provider.RevocationReason
	// NotAfter is the revoked certificate's NotAfter, so that a CRL can
	// drop entries for certificates that have expired anyway.
	NotAfter time.Time
}

// Store is the durable state of a CA: its own key material, the inventory
// of issued certificates, revocations and the CRL number. Every method
// that changes state must have made the change durable when it returns
// without error. Implementations must be safe for concurrent use, and a
// failed call must change nothing.
//
// MemStore and the SQL stores of package rootca/sqlstore implement it;
// package rootca/storetest holds the
// contract test suite every implementation passes.
type Store interface {
	// LoadAuthority returns the stored CA, or an error matching
	// provider.ErrNotFound when the store holds none yet.
	LoadAuthority(ctx context.Context) (*Authority, error)
	// CreateAuthority stores a CA if the store holds none, and returns
	// ErrAuthorityExists otherwise.
	CreateAuthority(ctx context.Context, a *Authority) error

	// AddCertificate records an issued certificate. Its Status must be
	// StatusValid. A serial already recorded yields ErrDuplicateSerial.
	AddCertificate(ctx context.Context, rec *provider.CertificateRecord) error
	// Certificate returns the record for serial, or an error matching
	// provider.ErrNotFound.
	Certificate(ctx context.Context, serial *big.Int) (*provider.CertificateRecord, error)
	// ListCertificates returns the records matching opts (nil means all)
	// in increasing order of NotAfter, then serial.
	ListCertificates(ctx context.Context, opts *provider.ListOptions) ([]*provider.CertificateRecord, error)

	// Revoke marks a recorded certificate revoked. An unknown serial
	// yields provider.ErrNotFound; a revoked one
	// provider.ErrAlreadyRevoked.
	Revoke(ctx context.Context, serial *big.Int, reason provider.RevocationReason, at time.Time) (*Revocation, error)
	// Revocations returns every revocation, in increasing order of serial.
	Revocations(ctx context.Context) ([]Revocation, error)

	// NextCRLNumber atomically increments the CRL number and returns the
	// new value. The first call returns 1; values never repeat.
	NextCRLNumber(ctx context.Context) (*big.Int, error)

	// Close releases the store's resources.
	Close() error
}

// A RevocationFeed is a Store that numbers revocations in the order they
// are committed, so that a CA sharing it with other processes learns of
// their revocations by asking only for the new ones. MemStore and
// sqlstore.Store implement it; a CA whose store does polls it (see
// Options.RevocationPollInterval).
type RevocationFeed interface {
	Store
	// RevocationsSince returns the revocations committed after cursor,
	// in commit order (for cursor 0, in any order), and the cursor to
	// pass next time. Cursor 0, and a cursor beyond the store's last
	// revocation (a database restored from an older backup), ask for
	// every revocation. Following the returned cursors, a caller sees
	// every revocation exactly once. After a restore, restart the CAs:
	// once the restored store has numbered past a CA's old cursor, the
	// revocations in between would be passed over.
	RevocationsSince(ctx context.Context, cursor int64) ([]Revocation, int64, error)
}

// A RevocationWaiter is a RevocationFeed that can wait for a revocation to
// be committed instead of being polled: sqlstore.Store on PostgreSQL, through
// LISTEN/NOTIFY.
type RevocationWaiter interface {
	RevocationFeed
	// WaitRevocation blocks until a revocation may have been committed
	// since the previous call, or ctx is done (then it returns ctx's
	// error). It returns an error wrapping errors.ErrUnsupported at once
	// when the store cannot wait (sqlstore.Store on SQLite or MariaDB). It is
	// meant for one waiter per store: two at once share notifications.
	WaitRevocation(ctx context.Context) error
}

// Errors of a RotationStore.
var (
	// ErrRotationInProgress is returned by RotationStore.AddGeneration,
	// and so by CA.BeginRotation, when a previous CA is not retired yet
	// or another process began a rotation at the same time.
	ErrRotationInProgress = storecheck.ErrRotationInProgress
	// ErrNotRetirable is returned by RotationStore.RetireGeneration for
	// the newest generation, an unknown one or one already retired, and
	// by CA.RetirePrevious when no previous CA remains to retire.
	ErrNotRetirable = storecheck.ErrNotRetirable
)

// Generation is one CA of a store that has been through rotations (see
// CA.BeginRotation): the CA CreateAuthority stored is generation 1, each
// successor the next number. The newest generation issues; the others are
// trusted until they are retired.
type Generation struct {
	// Number is 1 for the CA CreateAuthority stored, then 2, 3...
	Number int
	// Authority is the generation's chain and encrypted key.
	Authority
	// RetiredAt is when the generation was retired, zero while peers
	// still trust it.
	RetiredAt time.Time
}

// A RotationStore is a Store that keeps several generations of CA, so
// that the CA can rotate: a successor is added while the current CA stays
// trusted, and the previous one is retired later. MemStore and
// sqlstore.Store implement it. On such a store LoadAuthority returns the
// newest generation.
type RotationStore interface {
	Store
	// Generations returns every generation, retired ones included, in
	// increasing Number, or an error matching provider.ErrNotFound when
	// the store holds no CA.
	Generations(ctx context.Context) ([]Generation, error)
	// AddGeneration stores g as the newest generation. g.Number must be
	// one more than the newest stored, and every generation below the
	// newest must be retired; otherwise it returns
	// ErrRotationInProgress and changes nothing. Of several processes
	// adding a generation at once, exactly one succeeds. g.RetiredAt is
	// ignored.
	AddGeneration(ctx context.Context, g *Generation) error
	// RetireGeneration marks generation number retired at the given
	// time. The newest generation, an unknown one and a retired one
	// yield ErrNotRetirable.
	RetireGeneration(ctx context.Context, number int, at time.Time) error
	// GenerationStamp returns a number that changes whenever a
	// generation is added or retired, cheaply, so that a CA sharing the
	// store polls it to learn of rotations other processes make.
	GenerationStamp(ctx context.Context) (int64, error)
}
