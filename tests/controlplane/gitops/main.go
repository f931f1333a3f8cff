// Command gitops-check answers, for one kube-org object read as JSON or YAML on
// standard input, what the GitOps tools would say about it:
//
//	gitops-check kstatus                 the kstatus status (sigs.k8s.io/cli-utils, what
//	                                     Flux and Helm 4 wait on)
//	gitops-check argo-health ARGOCD_CM   the health Argo CD computes with the Lua check
//	                                     for the object's kind found in ARGOCD_CM (a
//	                                     ConfigMap with resource.customizations.health.<group>_<Kind>
//	                                     keys), run by gopher-lua as Argo CD runs it
//
// Each prints one JSON object {"status": ..., "message": ...} on standard output and
// exits 0; a malformed input or script exits 1 with the reason on standard error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type answer struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-check:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: gitops-check kstatus | argo-health ARGOCD_CM < object")
	}
	obj, err := readObject(stdin)
	if err != nil {
		return err
	}
	var result answer
	switch {
	case args[0] == "kstatus" && len(args) == 1:
		res, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("kstatus: %w", err)
		}
		result = answer{Status: res.Status.String(), Message: res.Message}
	case args[0] == "argo-health" && len(args) == 2:
		script, err := healthScript(args[1], obj)
		if err != nil {
			return err
		}
		if result, err = argoHealth(obj, script); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown command %q", args)
	}
	return json.NewEncoder(stdout).Encode(result)
}

func readObject(r io.Reader) (*unstructured.Unstructured, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	// Through JSON, so that integers stay int64 as in the API machinery.
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("reading the object: %w", err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(jsonData); err != nil {
		return nil, fmt.Errorf("reading the object: %w", err)
	}
	return obj, nil
}

// healthScript finds the Lua check for obj's kind in an argocd-cm ConfigMap, under the
// key Argo CD reads: resource.customizations.health.<group>_<Kind>.
func healthScript(configMapFile string, obj *unstructured.Unstructured) (string, error) {
	data, err := os.ReadFile(configMapFile)
	if err != nil {
		return "", err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return "", fmt.Errorf("%s: %w", configMapFile, err)
	}
	gvk := obj.GroupVersionKind()
	key := "resource.customizations.health." + gvk.Group + "_" + gvk.Kind
	script, ok := cm.Data[key]
	if !ok {
		return "", fmt.Errorf("%s has no key %s", configMapFile, key)
	}
	return script, nil
}

// argoHealth runs a health script the way Argo CD runs a user-configured one: no
// standard libraries but package, base and table (Argo CD adds a safe os library,
// which kube-org's checks do not use), the object as the global obj, one second at
// most, and only Argo CD's six health codes accepted.
func argoHealth(obj *unstructured.Unstructured, script string) (answer, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			return answer{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return answer{}, fmt.Errorf("the health script failed: %w", err)
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return answer{}, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	result := answer{Status: lua.LVAsString(table.RawGetString("status")), Message: lua.LVAsString(table.RawGetString("message"))}
	switch result.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return result, nil
	}
	return answer{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

// toLua converts decoded JSON as Argo CD does: arrays become sequences, objects tables.
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
