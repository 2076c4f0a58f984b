package driver

import (
	"context"
)

// Resource runs one resource (its single volume) on this node.
//
// A Resource is safe for concurrent use: every method may be called from
// any goroutine.
type Resource struct {
	opts Options
}

// New checks the configuration and returns a Resource; nothing is opened
// or started yet.
func New(opts Options) (*Resource, error) { return &Resource{opts: opts}, nil }

func (r *Resource) Attach(ctx context.Context) error                           { return errNotYet }
func (r *Resource) Detach(ctx context.Context) error                           { return errNotYet }
func (r *Resource) Connect(ctx context.Context, discardMyData bool) error      { return errNotYet }
func (r *Resource) Disconnect(ctx context.Context) error                       { return errNotYet }
func (r *Resource) Primary(ctx context.Context, force bool) error              { return errNotYet }
func (r *Resource) Secondary(ctx context.Context) error                        { return errNotYet }
func (r *Resource) NewCurrentUUID(ctx context.Context, clearBitmap bool) error { return errNotYet }
func (r *Resource) Invalidate(ctx context.Context) error                       { return errNotYet }
func (r *Resource) InvalidateRemote(ctx context.Context) error                 { return errNotYet }
func (r *Resource) Verify(ctx context.Context) error                           { return errNotYet }
func (r *Resource) PauseSync(ctx context.Context) error                        { return errNotYet }
func (r *Resource) ResumeSync(ctx context.Context) error                       { return errNotYet }
func (r *Resource) Outdate(ctx context.Context) error                          { return errNotYet }
func (r *Resource) Status() Status                                             { return Status{} }
func (r *Resource) Wait(ctx context.Context, cond func(Status) bool) error     { return errNotYet }
func (r *Resource) Down(ctx context.Context) error                             { return errNotYet }
