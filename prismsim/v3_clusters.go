package prismsim

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- clusters and subnets ----------

func (s *Sim) v3Cluster(c *cluster) obj {
	network := obj{
		"external_ip":         s.host,
		"external_subnet":     "127.0.0.0/255.0.0.0",
		"internal_subnet":     "192.168.5.0/255.255.255.128",
		"name_server_ip_list": []string{"127.0.0.53"},
		"ntp_server_ip_list":  []string{"0.pool.ntp.org"},
	}
	services := []string{"AOS"}
	build := obj{"build_type": "release", "version": "7.3.1.5", "full_version": "el8.5-release-ganges-7.3.1.5-stable-prismsim",
		"commit_id": "0000000000000000000000000000000000000000", "short_commit_id": "000000", "is_long_term_support": false}
	if c.PC {
		services = []string{"PRISM_CENTRAL"}
		network["fully_qualified_domain_name"] = "localhost"
		build["version"] = "pc"
		build["full_version"] = "el8.5-release-fraser-2024.3-stable-pc-prismsim"
	} else {
		network["external_data_services_ip"] = s.DataServicesIP()
		network["nfs_subnet_whitelist"] = []string{}
	}
	config := obj{
		"service_list":      services,
		"build":             build,
		"is_available":      true,
		"timezone":          "UTC",
		"redundancy_factor": 2,
		"operation_mode":    "NORMAL",
		"cluster_arch":      "X86_64",
		"encryption_status": "NOT_SUPPORTED",
		"software_map":      obj{"NOS": obj{"software_type": "NOS", "status": "INSTALLED", "version": build["version"]}},
	}
	resources := obj{"config": config, "network": network}
	if !c.PC {
		resources["nodes"] = obj{"hypervisor_server_list": []obj{{"ip": s.host, "type": "AHV", "version": "el8.nutanix.20230302.101026"}}}
	}
	specRes := obj{"config": obj{"timezone": "UTC", "redundancy_factor": 2, "operation_mode": "NORMAL",
		"encryption_status": "NOT_SUPPORTED"}, "network": network}
	t0 := time.Unix(1700000000, 0)
	return obj{
		"metadata": v3Meta("cluster", c.UUID, 1, t0, t0),
		"spec":     obj{"name": c.Name, "resources": specRes},
		"status":   obj{"name": c.Name, "state": "COMPLETE", "resources": resources},
	}
}

func (s *Sim) v3ListClusters(w http.ResponseWriter, r *http.Request) {
	v3List(s, w, r, "cluster", func(listReq) []*cluster { return s.m.Clusters }, func(c *cluster, k string) string {
		if k == "name" || k == "cluster_name" {
			return c.Name
		}
		return ""
	}, s.v3Cluster)
}

func (s *Sim) v3GetCluster(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Cluster %s not found", s.m.clusterByUUID, func(c *cluster) {
		o := s.v3Cluster(c)
		o["api_version"] = "3.1"
		simkit.WriteJSON(w, http.StatusOK, o)
	})
}

func (s *Sim) v3Subnet(sn *subnet) obj {
	c := s.m.clusterByUUID(sn.ClusterUUID)
	cref := ref("cluster", c.UUID, c.Name)
	third := 10 + sn.VLAN
	ipc := obj{"subnet_ip": "10.0." + itoa(third) + ".0", "prefix_length": 24, "default_gateway_ip": "10.0." + itoa(third) + ".1",
		"pool_list": []obj{{"range": "10.0." + itoa(third) + ".50 10.0." + itoa(third) + ".250"}}}
	res := obj{"subnet_type": "VLAN", "vlan_id": sn.VLAN, "vswitch_name": "br0", "ip_config": ipc}
	t0 := time.Unix(1700000000, 0)
	return obj{
		"metadata": v3Meta("subnet", sn.UUID, 1, t0, t0),
		"spec":     obj{"name": sn.Name, "resources": res, "cluster_reference": cref},
		"status":   obj{"name": sn.Name, "state": "COMPLETE", "resources": res, "cluster_reference": cref},
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func (s *Sim) v3ListSubnets(w http.ResponseWriter, r *http.Request) {
	v3List(s, w, r, "subnet", func(listReq) []*subnet { return s.m.Subnets }, func(sn *subnet, k string) string {
		c := s.m.clusterByUUID(sn.ClusterUUID)
		switch k {
		case "name", "subnet_name":
			return sn.Name
		case "cluster_name":
			return c.Name
		case "cluster_uuid":
			return c.UUID
		}
		return ""
	}, s.v3Subnet)
}

func (s *Sim) v3GetSubnet(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Subnet %s not found", s.m.subnetByUUID, func(sn *subnet) {
		o := s.v3Subnet(sn)
		o["api_version"] = "3.1"
		simkit.WriteJSON(w, http.StatusOK, o)
	})
}
