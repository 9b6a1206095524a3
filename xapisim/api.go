package xapisim

import (
	"crypto/subtle"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// method is one XenAPI message the simulator answers.
type method struct {
	// nargs is the number of parameters after the session (minArgs, when
	// set, allows fewer).
	nargs, minArgs int
	// noSession: the method takes no session (session.login_with_password).
	noSession bool
	// noAsync: there is no Async. form.
	noAsync bool
	// mutates: the state is saved after a successful call.
	mutates bool
	// selfLock: fn takes s.mu itself (it does I/O outside the lock).
	selfLock bool
	fn       func(c *call) (any, error)
}

// methods are the messages with their own implementation; the generic
// messages of each class (genericMethod) answer the rest.
var methods map[string]method

func init() {
	methods = map[string]method{
		"session.login_with_password": {nargs: 4, minArgs: 2, noSession: true, noAsync: true, fn: login},
		"session.logout":              {noAsync: true, fn: logout},
		"session.get_this_host":       {nargs: 1, noAsync: true, fn: sessionThisHost},
		"session.get_this_user":       {nargs: 1, noAsync: true, fn: func(*call) (any, error) { return nullRef, nil }},
		"session.get_record":          {nargs: 1, noAsync: true, fn: sessionRecord},
		"session.get_uuid":            {nargs: 1, noAsync: true, fn: sessionUUID},

		"VM.snapshot":               {nargs: 2, selfLock: true, fn: vmSnapshot},
		"VM.snapshot_with_quiesce":  {nargs: 2, selfLock: true, fn: vmSnapshotQuiesce},
		"VM.destroy":                {nargs: 1, mutates: true, fn: vmDestroy},
		"VM.create":                 {nargs: 1, mutates: true, fn: vmCreate},
		"VM.start":                  {nargs: 3, mutates: true, fn: vmStart},
		"VM.hard_shutdown":          {nargs: 1, mutates: true, fn: vmShutdown},
		"VM.clean_shutdown":         {nargs: 1, mutates: true, fn: vmShutdown},
		"VDI.create":                {nargs: 1, selfLock: true, fn: vdiCreate},
		"VDI.destroy":               {nargs: 1, mutates: true, fn: vdiDestroy},
		"VDI.enable_cbt":            {nargs: 1, mutates: true, fn: vdiEnableCBT},
		"VDI.disable_cbt":           {nargs: 1, mutates: true, fn: vdiDisableCBT},
		"VDI.list_changed_blocks":   {nargs: 2, selfLock: true, fn: vdiListChangedBlocks},
		"VDI.get_nbd_info":          {nargs: 1, fn: vdiNBDInfo},
		"VDI.data_destroy":          {nargs: 1, mutates: true, fn: vdiDataDestroy},
		"VBD.create":                {nargs: 1, mutates: true, fn: vbdCreate},
		"VBD.destroy":               {nargs: 1, mutates: true, fn: vbdDestroy},
		"VIF.create":                {nargs: 1, mutates: true, fn: vifCreate},
		"VIF.destroy":               {nargs: 1, mutates: true, fn: vifDestroy},
		"task.create":               {nargs: 2, noAsync: true, fn: taskCreate},
		"task.cancel":               {nargs: 1, fn: taskCancel},
		"task.destroy":              {nargs: 1, noAsync: true, fn: taskDestroy},
		"VM_guest_metrics.get_live": {nargs: 1, noAsync: true, fn: metricsLive},
	}
}

// lookupMethod finds a message by name (without "Async.").
func (s *Sim) lookupMethod(name string) (method, bool) {
	if m, ok := methods[name]; ok {
		if m.minArgs == 0 {
			m.minArgs = m.nargs
		}
		return m, true
	}
	return genericMethod(name)
}

// genericMethod is one of the messages every class has: get_all,
// get_all_records, get_record, get_by_uuid, get_by_name_label,
// get_<field>, and for some classes add_to_other_config,
// remove_from_other_config, set_other_config, set_name_label and
// set_name_description.
func genericMethod(name string) (method, bool) {
	cname, op, ok := strings.Cut(name, ".")
	cl, known := classes[cname]
	if !ok || !known {
		return method{}, false
	}
	ro := func(n int, fn func(c *call) (any, error)) (method, bool) {
		return method{nargs: n, minArgs: n, noAsync: true, fn: fn}, true
	}
	switch op {
	case "get_all":
		return ro(0, func(c *call) (any, error) { return cl.refs(c.s), nil })
	case "get_all_records":
		return ro(0, func(c *call) (any, error) {
			out := map[string]any{}
			for _, ref := range cl.refs(c.s) {
				out[ref] = cl.record(c.s, ref)
			}
			return out, nil
		})
	case "get_record":
		return ro(1, func(c *call) (any, error) {
			_, rec, err := c.object(cname, cl, 0)
			return rec, err
		})
	case "get_by_uuid":
		return ro(1, func(c *call) (any, error) {
			id, err := c.str(0)
			if err != nil {
				return nil, err
			}
			for _, ref := range cl.refs(c.s) {
				if cl.record(c.s, ref)["uuid"] == id {
					return ref, nil
				}
			}
			return nil, xerr("UUID_INVALID", cname, id)
		})
	case "get_by_name_label":
		return ro(1, func(c *call) (any, error) {
			label, err := c.str(0)
			if err != nil {
				return nil, err
			}
			out := []string{}
			for _, ref := range cl.refs(c.s) {
				if cl.record(c.s, ref)["name_label"] == label {
					out = append(out, ref)
				}
			}
			return out, nil
		})
	case "add_to_other_config", "remove_from_other_config", "set_other_config":
		if cl.otherConfig == nil {
			return method{}, false
		}
		n := map[string]int{"add_to_other_config": 3, "remove_from_other_config": 2, "set_other_config": 2}[op]
		return method{nargs: n, minArgs: n, mutates: true, fn: func(c *call) (any, error) {
			return nil, c.changeOtherConfig(cname, cl, op)
		}}, true
	case "set_name_label", "set_name_description":
		if cl.names == nil {
			return method{}, false
		}
		return method{nargs: 2, minArgs: 2, mutates: true, fn: func(c *call) (any, error) {
			ref, err := c.str(0)
			if err != nil {
				return nil, err
			}
			v, err := c.str(1)
			if err != nil {
				return nil, err
			}
			label, desc := cl.names(c.s, ref)
			if label == nil {
				return nil, handleInvalid(cname, ref)
			}
			if op == "set_name_label" {
				*label = v
			} else {
				*desc = v
			}
			return nil, nil
		}}, true
	}
	if field, ok := strings.CutPrefix(op, "get_"); ok && field != "" {
		return ro(1, func(c *call) (any, error) {
			_, rec, err := c.object(cname, cl, 0)
			if err != nil {
				return nil, err
			}
			v, ok := rec[field]
			if !ok {
				return nil, xerr("MESSAGE_METHOD_UNKNOWN", c.name)
			}
			return v, nil
		})
	}
	return method{}, false
}

// object reads parameter i as a reference to an object of class cl.
func (c *call) object(cname string, cl class, i int) (string, map[string]any, error) {
	ref, err := c.str(i)
	if err != nil {
		return "", nil, err
	}
	rec := cl.record(c.s, ref)
	if rec == nil {
		return "", nil, handleInvalid(cname, ref)
	}
	return ref, rec, nil
}

func (c *call) changeOtherConfig(cname string, cl class, op string) error {
	ref, err := c.str(0)
	if err != nil {
		return err
	}
	mp := cl.otherConfig(c.s, ref)
	if mp == nil {
		return handleInvalid(cname, ref)
	}
	if *mp == nil {
		*mp = map[string]string{}
	}
	switch op {
	case "set_other_config":
		v, err := c.stringMap(1)
		if err != nil {
			return err
		}
		*mp = v
	case "remove_from_other_config":
		k, err := c.str(1)
		if err != nil {
			return err
		}
		delete(*mp, k)
	default:
		k, err := c.str(1)
		if err != nil {
			return err
		}
		v, err := c.str(2)
		if err != nil {
			return err
		}
		if _, dup := (*mp)[k]; dup {
			return xerr("MAP_DUPLICATE_KEY", cname, "other_config", ref, k)
		}
		(*mp)[k] = v
	}
	return nil
}

// ---------- sessions ----------

func login(c *call) (any, error) {
	user, err := c.str(0)
	if err != nil {
		return nil, err
	}
	pw, err := c.str(1)
	if err != nil {
		return nil, err
	}
	originator := ""
	if len(c.params) > 3 {
		originator, _ = c.str(3)
	}
	s := c.s
	if subtle.ConstantTimeCompare([]byte(user), []byte("root")) != 1 ||
		subtle.ConstantTimeCompare([]byte(pw), []byte(s.password)) != 1 {
		return nil, xerr("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
	}
	x := &session{Ref: newRef(), UUID: simkit.NewUUID(), User: user, Originator: originator, Created: time.Now()}
	s.sessions[x.Ref] = x
	return x.Ref, nil
}

func logout(c *call) (any, error) {
	delete(c.s.sessions, c.sess.Ref)
	return nil, nil
}

func (c *call) sessionParam(i int) (*session, error) {
	ref, err := c.str(i)
	if err != nil {
		return nil, err
	}
	x := c.s.sessions[ref]
	if x == nil {
		return nil, handleInvalid("session", ref)
	}
	return x, nil
}

func sessionThisHost(c *call) (any, error) {
	if _, err := c.sessionParam(0); err != nil {
		return nil, err
	}
	return c.s.m.Host.Ref, nil
}

func sessionRecord(c *call) (any, error) {
	x, err := c.sessionParam(0)
	if err != nil {
		return nil, err
	}
	return c.s.sessionRecord(x), nil
}

func sessionUUID(c *call) (any, error) {
	x, err := c.sessionParam(0)
	if err != nil {
		return nil, err
	}
	return x.UUID, nil
}

func metricsLive(c *call) (any, error) {
	ref, err := c.str(0)
	if err != nil {
		return nil, err
	}
	if c.s.m.Metrics[ref] == nil {
		return nil, handleInvalid("VM_guest_metrics", ref)
	}
	return true, nil
}

// ---------- typed parameters (callers hold s.mu) ----------

func (c *call) vm(i int) (*vmRec, error) {
	ref, err := c.str(i)
	if err != nil {
		return nil, err
	}
	v := c.s.m.VMs[ref]
	if v == nil {
		return nil, handleInvalid("VM", ref)
	}
	return v, nil
}

func (c *call) vdi(i int) (*vdiRec, error) {
	ref, err := c.str(i)
	if err != nil {
		return nil, err
	}
	v := c.s.m.VDIs[ref]
	if v == nil {
		return nil, handleInvalid("VDI", ref)
	}
	return v, nil
}
