package hub

import (
	"errors"
	"testing"
	"time"
)

func TestReadEnv(t *testing.T) {
	home := func() (string, error) { return "/home/u", nil }
	tests := []struct {
		name  string
		env   map[string]string
		files map[string]string // token files
		want  environment
	}{
		{
			name: "defaults",
			want: environment{home: "/home/u/.cache/huggingface", hubCache: "/home/u/.cache/huggingface/hub",
				tokenPath: "/home/u/.cache/huggingface/token", endpoint: DefaultEndpoint},
		},
		{
			name: "XDG_CACHE_HOME",
			env:  map[string]string{"XDG_CACHE_HOME": "/xdg"},
			want: environment{home: "/xdg/huggingface", hubCache: "/xdg/huggingface/hub",
				tokenPath: "/xdg/huggingface/token", endpoint: DefaultEndpoint},
		},
		{
			name:  "HF_HOME with ~ and the token file",
			env:   map[string]string{"HF_HOME": "~/hf", "XDG_CACHE_HOME": "/xdg"},
			files: map[string]string{"/home/u/hf/token": "hf_file\n"},
			want: environment{home: "/home/u/hf", hubCache: "/home/u/hf/hub", tokenPath: "/home/u/hf/token",
				endpoint: DefaultEndpoint, token: "hf_file"},
		},
		{
			name: "HF_HUB_CACHE wins over the legacy variable, HF_TOKEN over the file",
			env: map[string]string{"HF_HOME": "/hf", "HF_HUB_CACHE": "$DATA/cache", "DATA": "/data",
				"HUGGINGFACE_HUB_CACHE": "/legacy", "HF_TOKEN": " hf_env ", "HF_ENDPOINT": "http://mirror:8080/"},
			files: map[string]string{"/hf/token": "hf_file"},
			want: environment{home: "/hf", hubCache: "/data/cache", tokenPath: "/hf/token",
				endpoint: "http://mirror:8080", token: "hf_env"},
		},
		{
			name: "legacy variables",
			env: map[string]string{"HUGGINGFACE_HUB_CACHE": "/legacy", "HUGGING_FACE_HUB_TOKEN": "hf_old",
				"TRANSFORMERS_OFFLINE": "1"},
			want: environment{home: "/home/u/.cache/huggingface", hubCache: "/legacy",
				tokenPath: "/home/u/.cache/huggingface/token", endpoint: DefaultEndpoint, token: "hf_old", offline: true},
		},
		{
			name:  "HF_TOKEN_PATH, offline, timeouts",
			env:   map[string]string{"HF_TOKEN_PATH": "/secrets/tok", "HF_HUB_OFFLINE": "yes", "HF_HUB_ETAG_TIMEOUT": "3", "HF_HUB_DOWNLOAD_TIMEOUT": "60"},
			files: map[string]string{"/secrets/tok": "hf_path"},
			want: environment{home: "/home/u/.cache/huggingface", hubCache: "/home/u/.cache/huggingface/hub",
				tokenPath: "/secrets/tok", endpoint: DefaultEndpoint, token: "hf_path", offline: true,
				metadataTimeout: 3 * time.Second, stallTimeout: time.Minute},
		},
		{
			name: "implicit token disabled, offline 0",
			env:  map[string]string{"HF_TOKEN": "hf_env", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "true", "HF_HUB_OFFLINE": "0"},
			want: environment{home: "/home/u/.cache/huggingface", hubCache: "/home/u/.cache/huggingface/hub",
				tokenPath: "/home/u/.cache/huggingface/token", endpoint: DefaultEndpoint},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			readFile := func(p string) ([]byte, error) {
				if s, ok := tt.files[p]; ok {
					return []byte(s), nil
				}
				return nil, errors.New("no such file")
			}
			want := tt.want
			if want.metadataTimeout == 0 {
				want.metadataTimeout = defaultTimeout
			}
			if want.stallTimeout == 0 {
				want.stallTimeout = defaultTimeout
			}
			if got := readEnv(getenv, home, readFile); got != want {
				t.Errorf("readEnv =\n%+v, want\n%+v", got, want)
			}
		})
	}
}
