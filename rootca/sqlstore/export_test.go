package sqlstore

import (
	"context"
	"database/sql"
	"time"
)

// Hooks for the external tests, which import the backend packages.

// MigrateTo migrates the raw database db, whose driver drv describes, up
// to schema version target, as an older build would have left it.
func MigrateTo(ctx context.Context, db *sql.DB, drv *Driver, target int) error {
	d, err := drv.dialect()
	if err != nil {
		return err
	}
	return (&Store{db: db, d: d}).migrateTo(ctx, target)
}

// MigrationStatement returns statement i of migration v (to version
// v+1), expanded for drv.
func MigrationStatement(drv *Driver, v, i int) string {
	d, _ := drv.dialect()
	return d.expand(migrations[v][i])
}

// Rebind rebinds query for drv.
func Rebind(drv *Driver, query string) string {
	d, _ := drv.dialect()
	return d.rebind(query)
}

// FormatTime and SchemaVersion are the package's.
func FormatTime(t time.Time) string { return formatTime(t) }

func SchemaVersion() int { return schemaVersion() }

// SetLeaseUpdateHook makes f run between a lease UPDATE that changed no
// row and the read that follows it, until the test ends.
func SetLeaseUpdateHook(t interface{ Cleanup(func()) }, f func()) {
	leaseUpdateHook = f
	t.Cleanup(func() { leaseUpdateHook = nil })
}
