package prismsim

import (
	"net/http"
)

// ---------- clustermgmt, networking ----------

func (s *Sim) v4Cluster(c *cluster) obj {
	fn := []string{"AOS"}
	network := obj{"$objectType": "clustermgmt.v4.config.ClusterNetworkReference", "externalAddress": ipv4(s.host)}
	if c.PC {
		fn = []string{"PRISM_CENTRAL"}
		network["fqdn"] = "localhost"
	} else {
		network["externalDataServiceIp"] = ipv4(s.DataServicesIP())
		network["nfsSubnetWhitelist"] = []string{}
	}
	return obj{"$objectType": "clustermgmt.v4.config.Cluster", "$reserved": reserved(), "extId": c.UUID, "name": c.Name,
		"network": network,
		"config": obj{"$objectType": "clustermgmt.v4.config.ClusterConfigReference", "clusterFunction": fn,
			"buildInfo":       obj{"$objectType": "clustermgmt.v4.config.BuildReference", "version": "7.3.1.5"},
			"hypervisorTypes": []string{"AHV"}, "redundancyFactor": 2},
		"nodes": obj{"$objectType": "clustermgmt.v4.config.NodeReference", "numberOfNodes": 1}}
}

func (s *Sim) v4ListClusters(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.Clusters, func(c *cluster, k string) string {
		switch k {
		case "name":
			return c.Name
		case "extId":
			return c.UUID
		}
		return ""
	}, s.v4Cluster)
}

func (s *Sim) v4GetCluster(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Cluster %s not found", s.m.clusterByUUID, func(c *cluster) {
		v4Get(w, r, "", s.v4Cluster(c))
	})
}

func v4Subnet(sn *subnet) obj {
	return obj{"$objectType": "networking.v4.config.Subnet", "$reserved": reserved(), "extId": sn.UUID,
		"name": sn.Name, "subnetType": "VLAN", "networkId": sn.VLAN, "clusterReference": sn.ClusterUUID,
		"virtualSwitchReference": "br0"}
}

func (s *Sim) v4ListSubnets(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.Subnets, func(sn *subnet, k string) string {
		switch k {
		case "name":
			return sn.Name
		case "extId":
			return sn.UUID
		case "clusterReference":
			return sn.ClusterUUID
		}
		return ""
	}, v4Subnet)
}

func (s *Sim) v4Container(c *container) obj {
	o := obj{"$objectType": "clustermgmt.v4.config.StorageContainer", "$reserved": reserved(), "extId": c.UUID,
		"containerExtId": c.UUID, "name": c.Name, "clusterExtId": c.ClusterUUID, "replicationFactor": 2}
	if cl := s.m.clusterByUUID(c.ClusterUUID); cl != nil {
		o["clusterName"] = cl.Name
	}
	return o
}

// v4ListContainers serves clustermgmt storage-containers (StorageContainer
// is identified by containerExtId).
func (s *Sim) v4ListContainers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.Containers, func(c *container, k string) string {
		switch k {
		case "name":
			return c.Name
		case "containerExtId", "extId":
			return c.UUID
		case "clusterExtId":
			return c.ClusterUUID
		}
		return ""
	}, s.v4Container)
}
