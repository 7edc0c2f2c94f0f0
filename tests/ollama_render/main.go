// Renders an Ollama Modelfile TEMPLATE as Ollama does: Go's text/template over a value with
// .Messages (each .Role, .Content), .System, .Prompt and .Response. Reads
// {"template": ..., "messages": [...]} as JSON on stdin, writes the rendered text to stdout.
// Used by tests/test_gguf.py; the template language and its whitespace rules are Go's own.
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Values struct {
	Messages []Message
	System   string
	Prompt   string
	Response string
}

func main() {
	var in struct {
		Template string    `json:"template"`
		Messages []Message `json:"messages"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("modelfile").Parse(in.Template))
	if err := tmpl.Execute(os.Stdout, Values{Messages: in.Messages}); err != nil {
		panic(err)
	}
}
