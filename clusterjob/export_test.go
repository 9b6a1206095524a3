package clusterjob

// LeaveDeadXenJob leaves in j a dead job of the XCP-ng pool named by
// pool, recorded through endpoint, whose one entry is o: a job killed on
// a pool reached another way (tests of the sweep's pool identity).
func LeaveDeadXenJob(j *Journal, endpoint, pool string, o Object) error {
	d, err := j.newJobDir("backup", jobInfo{Prism: endpoint, Hypervisor: HypervisorXen, Pool: pool})
	if err != nil {
		return err
	}
	defer d.release()
	return d.put(o)
}
