package migration

import (
	"strconv"
	"strings"
)

// Flags are libvirt's virDomainMigrateFlags, as passed to
// virDomainMigrate3 or virDomainMigrateToURI3. The values are libvirt's
// ABI and never change.
type Flags uint64

// The libvirt migration flags a plan may set.
const (
	FlagLive             Flags = 1 << 0  // VIR_MIGRATE_LIVE
	FlagPeerToPeer       Flags = 1 << 1  // VIR_MIGRATE_PEER2PEER
	FlagTunnelled        Flags = 1 << 2  // VIR_MIGRATE_TUNNELLED
	FlagPersistDest      Flags = 1 << 3  // VIR_MIGRATE_PERSIST_DEST
	FlagUndefineSource   Flags = 1 << 4  // VIR_MIGRATE_UNDEFINE_SOURCE
	FlagPaused           Flags = 1 << 5  // VIR_MIGRATE_PAUSED
	FlagNonSharedDisk    Flags = 1 << 6  // VIR_MIGRATE_NON_SHARED_DISK
	FlagNonSharedInc     Flags = 1 << 7  // VIR_MIGRATE_NON_SHARED_INC
	FlagChangeProtection Flags = 1 << 8  // VIR_MIGRATE_CHANGE_PROTECTION
	FlagUnsafe           Flags = 1 << 9  // VIR_MIGRATE_UNSAFE
	FlagOffline          Flags = 1 << 10 // VIR_MIGRATE_OFFLINE
	FlagCompressed       Flags = 1 << 11 // VIR_MIGRATE_COMPRESSED
	FlagAbortOnError     Flags = 1 << 12 // VIR_MIGRATE_ABORT_ON_ERROR
	FlagAutoConverge     Flags = 1 << 13 // VIR_MIGRATE_AUTO_CONVERGE
	FlagRDMAPinAll       Flags = 1 << 14 // VIR_MIGRATE_RDMA_PIN_ALL
	FlagPostcopy         Flags = 1 << 15 // VIR_MIGRATE_POSTCOPY
	FlagTLS              Flags = 1 << 16 // VIR_MIGRATE_TLS
	FlagParallel         Flags = 1 << 17 // VIR_MIGRATE_PARALLEL
)

// transportFlags are chosen by the plan's transport; callers may not set
// them through PlanOptions.ExtraFlags.
const transportFlags = FlagPeerToPeer | FlagTunnelled | FlagTLS

var flagNames = []struct {
	flag  Flags
	name  string // libvirt's constant without VIR_MIGRATE_
	virsh string
}{
	{FlagLive, "LIVE", "--live"},
	{FlagPeerToPeer, "PEER2PEER", "--p2p"},
	{FlagTunnelled, "TUNNELLED", "--tunnelled"},
	{FlagPersistDest, "PERSIST_DEST", "--persistent"},
	{FlagUndefineSource, "UNDEFINE_SOURCE", "--undefinesource"},
	{FlagPaused, "PAUSED", "--suspend"},
	{FlagNonSharedDisk, "NON_SHARED_DISK", "--copy-storage-all"},
	{FlagNonSharedInc, "NON_SHARED_INC", "--copy-storage-inc"},
	{FlagChangeProtection, "CHANGE_PROTECTION", "--change-protection"},
	{FlagUnsafe, "UNSAFE", "--unsafe"},
	{FlagOffline, "OFFLINE", "--offline"},
	{FlagCompressed, "COMPRESSED", "--compressed"},
	{FlagAbortOnError, "ABORT_ON_ERROR", "--abort-on-error"},
	{FlagAutoConverge, "AUTO_CONVERGE", "--auto-converge"},
	{FlagRDMAPinAll, "RDMA_PIN_ALL", "--rdma-pin-all"},
	{FlagPostcopy, "POSTCOPY", "--postcopy"},
	{FlagTLS, "TLS", "--tls"},
	{FlagParallel, "PARALLEL", "--parallel"},
}

// String returns the flags as libvirt names them, joined by "|", e.g.
// "VIR_MIGRATE_LIVE|VIR_MIGRATE_TLS". Unknown bits are printed in hex.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var parts []string
	rest := f
	for _, n := range flagNames {
		if f&n.flag != 0 {
			parts = append(parts, "VIR_MIGRATE_"+n.name)
			rest &^= n.flag
		}
	}
	if rest != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(rest), 16))
	}
	return strings.Join(parts, "|")
}

// virshOptions returns the `virsh migrate` options for f, in libvirt's
// flag order, and the bits virsh has no option for.
func (f Flags) virshOptions() (opts []string, rest Flags) {
	rest = f
	for _, n := range flagNames {
		if f&n.flag != 0 {
			opts = append(opts, n.virsh)
			rest &^= n.flag
		}
	}
	return opts, rest
}
