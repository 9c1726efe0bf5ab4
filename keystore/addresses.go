package keystore

import (
	"context"
	"fmt"
	"net"
	"slices"
)

// HostAddresses returns the host's addresses that peers can reach it by,
// as CloudStack's keystore-setup gathered them with `ip address`: every
// interface address except loopback, link-local (169.254/16, fe80::/10),
// multicast and unspecified ones, in interface order, without duplicates.
func HostAddresses(ctx context.Context) ([]net.IP, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("keystore: listing interface addresses: %w", err)
	}
	return filterAddresses(addrs), nil
}

func filterAddresses(addrs []net.Addr) []net.IP {
	var ips []net.IP
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		if !usableAddress(ip) {
			continue
		}
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	return ips
}

func usableAddress(ip net.IP) bool {
	return ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() &&
		!ip.IsMulticast() && !ip.IsUnspecified()
}
