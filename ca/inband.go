package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// AgentChannel carries provisioning commands to a host's agent over the
// platform's own management channel, CloudStack's in-band path: the agent
// is already connected (on the agent port) and receives
// SetupKeyStoreCommand and SetupCertificateCommand as it receives any
// other command. The platform implements it over its protocol; [NewAgentHost]
// makes it a [Host].
//
// On the agent, the platform answers the commands with package keystore:
// *[SetupKeystoreCommand] with keystore.Setup (its CSR is the answer's),
// *[SetupCertificateCommand] with keystore.Import, which refuses,
// changing nothing, a certificate that does not match the host's key or
// chain to the bundle, and *[ReloadCommand] by making its services read
// the files again (libvirttls has the libvirtd and QEMU reloads).
//
// Send returns the agent's answer, or an error when the command could not
// be delivered or the agent reported a failure. The keystore passphrase
// never travels: the agent keeps it in its agent.properties.
type AgentChannel interface {
	Send(ctx context.Context, cmd AgentCommand) (AgentAnswer, error)
}

// AgentCommand is one of *[SetupKeystoreCommand], *[SetupCertificateCommand]
// and *[ReloadCommand]; the set is closed.
type AgentCommand interface {
	commandName() string
}

// AgentAnswer is one of *[SetupKeystoreAnswer], *[SetupCertificateAnswer]
// and *[ReloadAnswer]; the set is closed.
type AgentAnswer interface {
	agentAnswer()
}

// SetupKeystoreCommand asks the agent to make sure it has a key and
// keystore and to answer with a CSR for its key (CloudStack's
// SetupKeyStoreCommand, without the password CloudStack sends along).
type SetupKeystoreCommand struct {
	Setup KeystoreSetup
}

// SetupKeystoreAnswer carries the agent's CSR, PEM.
type SetupKeystoreAnswer struct {
	CSRPEM []byte
}

// SetupCertificateCommand asks the agent to install its certificate and
// the CA bundle (CloudStack's SetupCertificateCommand; never a private
// key: the agent's key does not leave it).
type SetupCertificateCommand struct {
	Install CertificateInstall
}

// SetupCertificateAnswer says the agent installed the certificate.
type SetupCertificateAnswer struct{}

// ReloadCommand asks the agent to make its services use the new
// credentials without restarting anything that runs guests (CloudStack
// restarts libvirtd and the agent instead).
type ReloadCommand struct{}

// ReloadAnswer says the agent reloaded.
type ReloadAnswer struct{}

func (*SetupKeystoreCommand) commandName() string    { return "SetupKeystoreCommand" }
func (*SetupCertificateCommand) commandName() string { return "SetupCertificateCommand" }
func (*ReloadCommand) commandName() string           { return "ReloadCommand" }
func (*SetupKeystoreAnswer) agentAnswer()            {}
func (*SetupCertificateAnswer) agentAnswer()         {}
func (*ReloadAnswer) agentAnswer()                   {}

// AgentHost is a [Host] reached through an [AgentChannel].
type AgentHost struct {
	ch AgentChannel
}

var _ Host = (*AgentHost)(nil)

// NewAgentHost returns a [Host] that provisions through ch.
func NewAgentHost(ch AgentChannel) *AgentHost { return &AgentHost{ch: ch} }

// SetupKeystore sends a *[SetupKeystoreCommand] and returns the CSR of
// the answer, which must be one PEM CERTIFICATE REQUEST of at most 64 KiB.
func (h *AgentHost) SetupKeystore(ctx context.Context, req *KeystoreSetup) ([]byte, error) {
	cmd := &SetupKeystoreCommand{}
	if req != nil {
		cmd.Setup = *req
	}
	ans, err := send[*SetupKeystoreAnswer](ctx, h.ch, cmd)
	if err != nil {
		return nil, err
	}
	switch {
	case len(ans.CSRPEM) > maxRemoteStdout:
		return nil, fmt.Errorf("ca: agent: CSR over %d bytes", maxRemoteStdout)
	case !bytes.Contains(ans.CSRPEM, []byte("-----BEGIN CERTIFICATE REQUEST-----")):
		return nil, errors.New("ca: agent: the answer holds no CSR")
	}
	return ans.CSRPEM, nil
}

// InstallCertificate sends a *[SetupCertificateCommand].
func (h *AgentHost) InstallCertificate(ctx context.Context, c *CertificateInstall) error {
	if c == nil || len(c.CertificatePEM) == 0 || len(c.CABundlePEM) == 0 {
		return errors.New("ca: agent: CertificateInstall needs CertificatePEM and CABundlePEM")
	}
	_, err := send[*SetupCertificateAnswer](ctx, h.ch, &SetupCertificateCommand{Install: *c})
	return err
}

// Reload sends a *[ReloadCommand].
func (h *AgentHost) Reload(ctx context.Context) error {
	_, err := send[*ReloadAnswer](ctx, h.ch, &ReloadCommand{})
	return err
}

// send sends cmd and checks that the answer has the type that answers it.
func send[A AgentAnswer](ctx context.Context, ch AgentChannel, cmd AgentCommand) (A, error) {
	var zero A
	if ch == nil {
		return zero, errors.New("ca: agent: nil AgentChannel")
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	ans, err := ch.Send(ctx, cmd)
	if err != nil {
		return zero, fmt.Errorf("ca: agent: %s: %w", cmd.commandName(), err)
	}
	a, ok := ans.(A)
	if !ok || any(a) == nil || isNilPointer(a) {
		return zero, fmt.Errorf("ca: agent: %s answered with %T", cmd.commandName(), ans)
	}
	return a, nil
}

// isNilPointer reports whether a is a typed nil of one of the answer
// types.
func isNilPointer(a AgentAnswer) bool {
	switch v := a.(type) {
	case *SetupKeystoreAnswer:
		return v == nil
	case *SetupCertificateAnswer:
		return v == nil
	case *ReloadAnswer:
		return v == nil
	}
	return false
}
