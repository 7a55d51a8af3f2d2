// ollama_render renders chat requests through an Ollama TEMPLATE the way an Ollama server does,
// so llmbuild can compare the prompt Ollama would build with the one the model was trained on.
//
// It reproduces, with Go's own text/template, the data Ollama's chat handler gives a template:
// the Modelfile's MESSAGE turns and SYSTEM (prepended when the request has no system message),
// consecutive same-role messages joined with a blank line (tool results stay separate), every
// system message joined into .System, and tools and tool calls in the shape Ollama's template
// package exposes them (`json` gives Go's encoding/json output: compact, fixed field order, map
// keys sorted, <>& escaped). Only the standard library: it builds offline.
//
// Input (stdin, JSON): {"template", "system", "messages": [Modelfile MESSAGEs], "requests": [{"messages", "tools"}]}
// Output (stdout, JSON): {"prompts": [...]} or {"error": "..."}
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type input struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []message `json:"messages"`
	Requests []request `json:"requests"`
}

type request struct {
	Messages []message `json:"messages"`
	Tools    []tool    `json:"tools"`
}

// message is one chat message, as Ollama's /api/chat receives it.
type message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking"`
	ToolCalls  []toolCall `json:"tool_calls"`
	ToolName   string     `json:"tool_name"`
	ToolCallID string     `json:"tool_call_id"`
}

type toolCall struct {
	ID       string           `json:"id"`
	Function toolCallFunction `json:"function"`
}

type toolCallFunction struct {
	Index     int            `json:"index"`
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

// The view a template gets: field names are what templates use (.Role, .ToolCalls, .Function.Name).
type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []toolCall
	ToolName   string
	ToolCallID string
}

type tool struct {
	Type     string       `json:"type"`
	Items    any          `json:"items,omitempty"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name        string             `json:"name"`
	Description string             `json:"description"`
	Parameters  functionParameters `json:"parameters"`
}

type functionParameters struct {
	Type       string                  `json:"type"`
	Defs       any                     `json:"$defs,omitempty"`
	Items      any                     `json:"items,omitempty"`
	Required   []string                `json:"required,omitempty"`
	Properties map[string]toolProperty `json:"properties"`
}

type toolProperty struct {
	AnyOf       []toolProperty          `json:"anyOf,omitempty"`
	Type        propertyType            `json:"type,omitempty"`
	Items       any                     `json:"items,omitempty"`
	Description string                  `json:"description,omitempty"`
	Enum        []any                   `json:"enum,omitempty"`
	Properties  map[string]toolProperty `json:"properties,omitempty"`
	Required    []string                `json:"required,omitempty"`
}

// propertyType is "string" or ["string", "null"]; one type is written back as a plain string.
type propertyType []string

func (p *propertyType) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*p = propertyType{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return fmt.Errorf("a tool property type must be a string or a list of strings, got %s", data)
	}
	*p = many
	return nil
}

func (p propertyType) MarshalJSON() ([]byte, error) {
	if len(p) == 1 {
		return json.Marshal(p[0])
	}
	return json.Marshal([]string(p))
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

// conversation is what the chat handler hands the template: MESSAGE turns, then the request,
// with the Modelfile SYSTEM in front unless the request starts with its own system message.
func conversation(in input, req request) []message {
	msgs := append(append([]message{}, in.Messages...), req.Messages...)
	if len(req.Messages) > 0 && req.Messages[0].Role != "system" && in.System != "" {
		msgs = append([]message{{Role: "system", Content: in.System}}, msgs...)
	}
	return msgs
}

// collate joins all system messages into .System and merges consecutive same-role messages
// (tool results excepted), as Ollama's template package does before executing a template.
func collate(msgs []message) (string, []*templateMessage) {
	var system []string
	var out []*templateMessage
	for _, m := range msgs {
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if n := len(out); n > 0 && out[n-1].Role == m.Role && m.Role != "tool" {
			out[n-1].Content += "\n\n" + m.Content
			continue
		}
		out = append(out, &templateMessage{Role: m.Role, Content: m.Content, Thinking: m.Thinking,
			ToolCalls: m.ToolCalls, ToolName: m.ToolName, ToolCallID: m.ToolCallID})
	}
	return strings.Join(system, "\n\n"), out
}

func render(tmpl *template.Template, in input, req request) (string, error) {
	system, msgs := collate(conversation(in, req))
	var tools []tool
	if req.Tools != nil {
		tools = req.Tools
	}
	var b bytes.Buffer
	err := tmpl.Execute(&b, map[string]any{
		"System": system, "Messages": msgs, "Tools": tools, "Response": "",
		"Think": false, "ThinkLevel": "", "IsThinkSet": false,
	})
	return b.String(), err
}

func run() ([]string, error) {
	var in input
	decoder := json.NewDecoder(os.Stdin)
	if err := decoder.Decode(&in); err != nil {
		return nil, fmt.Errorf("reading the request: %v", err)
	}
	if !strings.Contains(in.Template, ".Messages") {
		// Ollama renders such a template turn by turn through .Prompt/.Response (its legacy
		// path); llmbuild's templates all use .Messages, so this renderer does not model it.
		return nil, fmt.Errorf("the TEMPLATE does not use .Messages; only message-based templates are supported")
	}
	tmpl, err := template.New("TEMPLATE").Option("missingkey=zero").Funcs(funcs).Parse(in.Template)
	if err != nil {
		return nil, fmt.Errorf("the TEMPLATE does not parse: %v", err)
	}
	prompts := make([]string, 0, len(in.Requests))
	for i, req := range in.Requests {
		prompt, err := render(tmpl, in, req)
		if err != nil {
			return nil, fmt.Errorf("request %d: %v", i, err)
		}
		prompts = append(prompts, prompt)
	}
	return prompts, nil
}

func main() {
	prompts, err := run()
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if err != nil {
		_ = out.Encode(map[string]string{"error": err.Error()})
		os.Exit(1)
	}
	_ = out.Encode(map[string][]string{"prompts": prompts})
}
